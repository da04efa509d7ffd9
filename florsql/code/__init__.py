"""Static facts about training scripts (standard library only: recording processes use it)."""
