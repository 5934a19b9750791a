"""medview.imaging."""
