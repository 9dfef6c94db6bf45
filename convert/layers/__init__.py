"""The building blocks of the official YOLOv5 model descriptions (v5.0 to v7.0).

Module and tensor names follow the published checkpoints (`cv1.conv.weight`, `m.0.cv2.bn.bias`, ...)
so released weights load with a plain `load_state_dict`.
"""
