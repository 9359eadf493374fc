"""Few-shot learning: episodes, prototypical networks, SetFit-style tuning.

```python
import ktransfer as kt
sampler = kt.fewshot.EpisodeSampler(train, n_way=5, k_shot=5, n_query=15, seed=0)
protonet = kt.fewshot.PrototypicalNetwork(encoder)   # fit on sampler.dataset()
protonet.predict(support_texts, support_labels, query_texts)
setfit = kt.fewshot.ContrastiveFinetuner(encoder).fit(texts, labels)
```
"""

from ktransfer.methods.fewshot.contrastive import ContrastiveFinetuner
from ktransfer.methods.fewshot.contrastive import contrastive_pairs
from ktransfer.methods.fewshot.episodes import EpisodeSampler
from ktransfer.methods.fewshot.prototypical import PrototypicalNetwork
from ktransfer.methods.fewshot.prototypical import prototype_logits

__all__ = [
    "ContrastiveFinetuner",
    "EpisodeSampler",
    "PrototypicalNetwork",
    "contrastive_pairs",
    "prototype_logits",
]
