"""medview.treatments."""
