"""Rules shared by every package: CJK character ranges (:mod:`common.cjk`) and file writing/hashing
(:mod:`common.files`). Imports nothing of the project; every package may import it."""
