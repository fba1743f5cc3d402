"""Where the project's own files live, independent of the current directory."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKFLOW_DEFS_DIR = REPO_ROOT / "workflow_defs"
DEFAULT_PROMPTS_DIR = REPO_ROOT / "prompts"
DEFAULT_STATE_DIR = REPO_ROOT / ".llmflow"
