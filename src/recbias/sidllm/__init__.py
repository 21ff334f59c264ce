"""The SID-LLM recommender: items as semantic-ID tokens in a causal LM (LC-Rec / MiniOneRec style).

``items.representation = "sid"`` (or ``"sid+title"``) in a run config turns an LLM run into a
SID-LLM run: :mod:`~recbias.sidllm.items` quantises the items (genrec quantisers),
:mod:`~recbias.sidllm.vocab` adds one token per (level, code), :mod:`~recbias.sidllm.embeddings`
initialises their rows and :mod:`~recbias.sidllm.assemble` wires it into the model loading.
"""
