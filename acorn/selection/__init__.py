"""Which unlabeled tiles go to the labelers: the candidates predicted, the strategies that score
them, and the ordered queue the labeling backend receives."""
