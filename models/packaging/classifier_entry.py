"""The registered classifier as an MLflow pyfunc, and its models-from-code entry point: MLflow runs this file to
build the model object, so a registered classifier holds source code and safetensors weights, never a pickle.

`predict` takes texts (a DataFrame with a `text` column, a list, or one string) and returns a DataFrame with one row
per text: the predicted `label` (as a string), its `probability` and one `prob_<label>` column per label.
"""

import mlflow

from models.hardware.devices import resolve_device
from models.inference.classifier import as_texts, load_classifier, predict_proba


class LmforgeClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        device = str(resolve_device("auto"))
        self.model, self.tokenizer, self.meta = load_classifier(context.artifacts["classifier"], device)

    def predict(self, context, model_input, params=None):
        import pandas as pd

        labels = self.meta["labels"]
        probs = predict_proba(self.model, self.tokenizer, as_texts(model_input), self.meta["max_len"])
        best = probs.argmax(-1).tolist()
        rows = {
            "label": [str(labels[i]) for i in best],
            "probability": [float(probs[n, i]) for n, i in enumerate(best)],
        }
        rows |= {f"prob_{label}": probs[:, j].tolist() for j, label in enumerate(labels)}
        return pd.DataFrame(rows)


mlflow.models.set_model(LmforgeClassifier())
