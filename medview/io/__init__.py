"""medview.io."""
