"""Print the README's configuration table from the settings model (python scripts/settings_table.py)."""

from __future__ import annotations

from prewarm.settings import Settings


def main() -> None:
    print("| variable | default | meaning |")
    print("|---|---|---|")
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "(empty)" if default in ("", None, {}) else f"`{default}`"
        if hasattr(default, "get_secret_value"):
            shown = "(empty)" if not default.get_secret_value() else "(set)"
        description = (field.description or "").replace("|", "\\|")
        print(f"| `PREWARM_{name.upper()}` | {shown} | {description} |")


if __name__ == "__main__":
    main()
