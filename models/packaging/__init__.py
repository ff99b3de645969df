"""MLflow packaging: the chat model pyfunc and the code it ships (`pyfunc`) and the models-from-code
entry points MLflow runs to load a registered chat model (`pyfunc_entry`) or classifier (`classifier_entry`).
"""
