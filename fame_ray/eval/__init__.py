"""Pure evaluation: clip/video accuracy (`metrics`), retrieval recall (`retrieval`) and the
results tables of downstream runs (`report`). No Ray and no model code here."""
