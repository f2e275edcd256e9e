"""The detector's life: load and predict (detection), the prediction cache, fine-tune and score
(training), and the MLflow registry whose promotion gate names the champion."""
