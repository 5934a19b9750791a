"""medview.ai."""
