"""The Lightning side of vidgen: the LightningModules, their callbacks, checkpoints and the training run.

Importing it silences two Lightning notices that every vidgen run would print, in every process (spawned DDP /
FSDP ranks import this package to unpickle their module): the frozen EMA twin and autoencoder are in eval mode
on purpose, and the tree-spec deprecation notice comes from Lightning's own code.
"""

import warnings

warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
