"""Production monitoring: the nightly drift check and the retraining trigger.

* ``monitoring/drift.py`` — drift metrics, sample-size-aware thresholds and the decision (numpy, SciPy,
  scikit-learn);
* ``monitoring/report.py`` — the self-contained HTML report (inline SVG plots, works offline);
* ``monitoring/drift_check.py`` — the command: reads the baseline and the prediction log, computes TFDV
  statistics, schema anomalies and drift, writes the reports and starts retraining when needed;
* ``monitoring/trigger.py`` — how a retraining run is started (local pipeline; Vertex AI plugs in).

Runs in its own environment (``.venv-monitoring``, ``monitoring/requirements.txt``): TFDV needs
protobuf < 6 and pandas < 2, the main environment has newer ones. Only ``drift.py``, ``report.py`` and
``trigger.py`` import without TFDV.
"""
