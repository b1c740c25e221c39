"""HTML pages a release manager reads: the rollout report and the verdict page (SPEC §11)."""
