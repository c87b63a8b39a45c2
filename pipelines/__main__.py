"""List the runnable jobs, one line each."""
import importlib
import pkgutil

import pipelines


def jobs() -> list[tuple[str, str]]:
    found = []
    for info in pkgutil.iter_modules(pipelines.__path__):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"pipelines.{info.name}")
        if callable(getattr(module, "main", None)):
            summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
            found.append((info.name, summary))
    return found


def main():
    listed = jobs()
    width = max(len(name) for name, _ in listed)
    print("jobs (run with: python -m pipelines.<job> --help):")
    for name, summary in listed:
        print(f"  {name:<{width}}  {summary}")


if __name__ == "__main__":
    main()
