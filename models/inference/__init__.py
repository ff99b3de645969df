"""Running a trained model: the chat engine every serving path shares (`generate`: chat template,
context budget, sampling, stop strings, streaming), int8 weights for CPU serving (`quantize`) and the sequence
classifier's head, checkpoint and predictions (`classifier`).
"""
