"""Shadow verification on live traffic: copies of a share of a route's requests sent to a
candidate model after the client's answer, graded against the answer the client got, and an
anytime-valid verdict on whether the candidate is non-inferior. Above `api` in the layers (it
drives the pipeline as a client would), which knows it only as an `AnswerObserver`."""
