"""The width-slimmable family (Aich et al., ICCV 2023): one shared encoder and one
decoder per task whose channel widths are slimmable. `model` (SlimNet), `train`
(sandwich-rule fit with configuration-invariant distillation), `family` (the
compiler's torch half); the torch-free half is edgecore/widths.py."""
