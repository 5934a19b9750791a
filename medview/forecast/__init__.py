"""medview.forecast."""
