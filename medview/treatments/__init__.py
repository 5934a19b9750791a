"""Treatment suggestions (Qt-free): collaborative filtering plus condition-linked evidence.

::

    from medview.records import load_records
    from medview.treatments import Recommender, leave_one_out
    rec = Recommender.from_records(load_records("synthea_csv/"))
    result = rec.suggest(patient_id, k=5, working=[("233604007", "Pneumonia")])
    leave_one_out(records, k=5).as_dict()
"""

from medview.treatments.data import TreatmentData, build_data
from medview.treatments.evaluate import EvalResult, leave_one_out
from medview.treatments.recommender import (
    NOTICE,
    Params,
    Recommender,
    SimilarPatient,
    Suggestion,
    SuggestionResult,
)

__all__ = [
    "NOTICE",
    "EvalResult",
    "Params",
    "Recommender",
    "SimilarPatient",
    "Suggestion",
    "SuggestionResult",
    "TreatmentData",
    "build_data",
    "leave_one_out",
]
