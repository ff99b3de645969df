"""Models-from-code entry point of the pyfunc chat model: MLflow runs this file to build the model object, so a
registered model holds source code and safetensors weights, never a pickle
(`models.packaging.pyfunc.save_chat_model`)."""

import mlflow

from models.packaging.pyfunc import LmforgeChatModel

mlflow.models.set_model(LmforgeChatModel())
