"""The registered model's inference wrapper, logged as MLflow "models from code": MLflow copies this file
into the model and runs it at load time, so it imports only mlflow, numpy, torch and ssl_ops (which the
model carries in its code/ folder), never Dagster.

    model = mlflow.pyfunc.load_model("models:/ssl-encoder@champion")
    emb = model.predict(images)   # uint8 [N, H, W, C], any H and W, C = 1, 3 or 4  ->  float32 [N, D]

Images are resized (bilinear, antialiased) to the encoder's input size and normalised exactly as the probes
did (ssl_ops.features.extract_features), so the embeddings equal the ones the model was evaluated on.
"""

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class EncoderEmbeddings(PythonModel):
    def load_context(self, context):
        from ssl_ops.train.checkpoint import load_encoder

        self.encoder, self.meta = load_encoder(context.artifacts["encoder"])

    def predict(self, context, model_input, params=None):
        import torch

        from ssl_ops.features import extract_features

        if isinstance(model_input, dict):  # a named input (e.g. {"images": ...} from a serving request)
            if len(model_input) != 1:
                raise ValueError(f"expected one input, the images; got {sorted(model_input)}")
            model_input = next(iter(model_input.values()))
        x = np.asarray(model_input)
        if x.dtype != np.uint8:
            raise TypeError(f"images must be uint8 [N, H, W, C] (0..255), got dtype {x.dtype}")
        if x.ndim == 3:  # [N, H, W] grayscale
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
            raise ValueError(f"images must be [N, H, W, C] with C = 1, 3 or 4, got shape {x.shape}")
        if x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        elif x.shape[-1] == 4:
            x = x[..., :3]  # alpha dropped, as the pipeline's decoder does
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()
        return extract_features(self.encoder, t, self.meta["image_size"]).numpy().astype(np.float32)


mlflow.models.set_model(EncoderEmbeddings())
