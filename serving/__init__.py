"""Online churn predictions: a FastAPI app on Vertex AI's custom-container contract.

``serving.app`` builds the app (``uvicorn serving.app:app`` or ``python -m serving``), ``serving.model``
loads and verifies the ONNX model folder, ``serving.columns`` validates requests into model input arrays
(falling back to the pydantic models of ``serving.schemas`` for detailed errors), ``serving.prediction_log``
appends predictions to CSV off the request path, ``serving.settings`` reads the ``AIP_*`` and ``SERVING_*``
environment. Nothing here imports scikit-learn, pandas or pickle.
"""
