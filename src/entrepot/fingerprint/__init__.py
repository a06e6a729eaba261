"""Fingerprints of models: is the model behind an alias still the one we measured?

`take` asks a fixed, versioned set of canary prompts (`canaries_v1.yaml`) with deterministic
settings and stores the answers; `check` asks them again and compares (`compare`). Every call goes
through a gateway's pipeline (`bench.through_gateway`), so the same policy, key, budget and ledger
apply as to any client.
"""
