"""Real-looking web documents for the filter benchmarks, made from text that ships with Python.

Source text: the docstrings (English prose written by people) and the source
code of the Python standard library of the interpreter running this script
(``sysconfig.get_paths()["stdlib"]``, read with ``ast``, nothing imported), so
the corpus is the same on every machine with the same Python version.  Kinds
of document, mixed by a seeded ``random.Random``:

prose (1-25 docstring paragraphs), web page (prose between navigation,
cookie/terms boilerplate, share buttons, copyright lines), repetitive spam
(repeated lines, phrases, keyword stuffing), lists (``-``/``•``/numbered
items), code (a slice of a stdlib module), short lines (titles, captions,
hashtags), teasers (lines ending in ``...``), lorem ipsum, pages mentioning
JavaScript or holding ``{`` -- so every Gopher, C4 and FineWeb rule fires on
some documents and most documents sit near some threshold.

Pure standard library: imported by both the venv of this project and the
datatrove venv.  ``python -m benchmarks.filter_corpus --docs 10000 --out F.jsonl``.
"""
import argparse
import ast
import json
import os
import random
import sysconfig

NAV = ["Home", "About us", "Contact", "Blog", "Shop", "Login", "Sign up", "Search", "Menu",
       "Products", "Services", "FAQ", "Careers", "Press", "Help", "Cart (0)", "Next »", "« Previous"]
BOILER = ["This website uses cookies to improve your experience.",
          "By continuing you agree to our Terms of Use and Privacy Policy.",
          "We use cookies to personalise content and ads.",
          "Please enable JavaScript to view the comments.",
          "Copyright © 2024 Example Media Ltd. All rights reserved.",
          "Share this article:", "Follow us on Twitter", "Subscribe to our newsletter!",
          "Read our cookie policy.", "Posted by admin", "Leave a comment", "Tags: news, tech",
          "Click here to read more...", "Related posts", "You may also like..."]
SPAM = ["buy cheap shoes online", "best price guaranteed", "free shipping today",
        "click here now", "limited offer", "cheap viagra", "casino bonus", "win big"]
LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua.")


def _stdlib_files():
    root = sysconfig.get_paths()["stdlib"]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("test", "tests", "idlelib", "site-packages",
                                                              "lib2to3", "__pycache__", "turtledemo"))
        for name in sorted(filenames):
            if name.endswith(".py"):
                out.append(os.path.join(dirpath, name))
    return out


def source_text(max_files: int = 400):
    """``(paragraphs, code_files)`` from the stdlib: docstring paragraphs of >= 80 chars, sources."""
    paragraphs, code = [], []
    for path in _stdlib_files()[:max_files]:
        try:
            with open(path, encoding="utf-8") as f:
                src = f.read()
            tree = ast.parse(src)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        code.append(src)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if not doc:
                    continue
                for para in doc.split("\n\n"):
                    para = " ".join(line.strip() for line in para.splitlines()).strip()
                    if len(para) >= 80 and not para.startswith((">>>", "..")):
                        paragraphs.append(para)
    return paragraphs, code


def make_documents(n: int, seed: int = 1):
    """``n`` dicts ``{"id", "text", "kind"}``, deterministic for a seed and Python version."""
    rng = random.Random(seed)
    paragraphs, code = source_text()
    kinds = ["prose"] * 30 + ["web"] * 20 + ["spam"] * 8 + ["list"] * 10 + ["code"] * 7 + \
            ["short"] * 8 + ["teaser"] * 5 + ["lorem"] * 2 + ["js"] * 4 + ["mixed"] * 6

    def prose(k):
        return "\n".join(rng.choice(paragraphs) for _ in range(k))

    docs = []
    for i in range(n):
        kind = rng.choice(kinds)
        if kind == "prose":
            sep = rng.choice(["\n", "\n\n"])
            text = sep.join(rng.choice(paragraphs) for _ in range(rng.randint(1, 25)))
        elif kind == "web":
            parts = [" | ".join(rng.sample(NAV, rng.randint(2, 7)))]
            parts += rng.sample(NAV, rng.randint(0, 6))
            parts.append(prose(rng.randint(1, 10)))
            parts += rng.sample(BOILER, rng.randint(1, 8))
            rng.shuffle(parts) if rng.random() < 0.2 else None
            text = "\n".join(parts)
        elif kind == "spam":
            mode = rng.randint(0, 3)
            if mode == 0:
                line = rng.choice(paragraphs)
                text = "\n".join([line] * rng.randint(2, 6) + [prose(rng.randint(0, 6))])
            elif mode == 1:
                text = " ".join(rng.choice(SPAM) for _ in range(rng.randint(20, 200)))
            elif mode == 2:
                text = prose(rng.randint(1, 8)) + "\n" + "\n".join(
                    rng.choice(SPAM).capitalize() + "!" for _ in range(rng.randint(1, 30)))
            else:
                words = rng.choice(paragraphs).split()
                text = " ".join(words[:rng.randint(5, 12)] * rng.randint(2, 8)) + " " + prose(rng.randint(1, 5))
        elif kind == "list":
            bullet = rng.choice(["- ", "• ", "* ", "", "1. "])
            items = []
            for _ in range(rng.randint(3, 40)):
                words = rng.choice(paragraphs).split()
                cut = rng.randint(2, min(len(words), 25))
                item = " ".join(words[:cut])
                items.append(bullet + item + rng.choice(["", ".", ";", ":"]))
            text = ("\n".join(items) if rng.random() < 0.7
                    else prose(rng.randint(1, 4)) + "\n" + "\n".join(items))
        elif kind == "code":
            src = rng.choice(code)
            start = rng.randint(0, max(0, len(src) - 3000))
            text = src[start:start + rng.randint(300, 6000)]
        elif kind == "short":
            lines = []
            for _ in range(rng.randint(1, 30)):
                words = rng.choice(paragraphs).split()
                line = " ".join(words[:rng.randint(1, 8)])
                if rng.random() < 0.3:
                    line += " #" + rng.choice(words).strip(".,;:()").lower()
                lines.append(line)
            text = "\n".join(lines)
        elif kind == "teaser":
            lines = []
            for _ in range(rng.randint(2, 20)):
                words = rng.choice(paragraphs).split()
                lines.append(" ".join(words[:rng.randint(4, 20)]) + rng.choice(["...", "…", ".", "..."]))
            text = "\n".join(lines)
        elif kind == "lorem":
            text = prose(rng.randint(1, 6)) + "\n" + LOREM + "\n" + prose(rng.randint(0, 4))
        elif kind == "js":
            text = prose(rng.randint(2, 10))
            extra = rng.choice(["You need to enable JavaScript to run this app.",
                                "function f() { return 1; }",
                                "Settings are stored as {\"key\": \"value\"} pairs.",
                                "Use the Javascript console to debug."])
            text = text + "\n" + extra + "\n" + prose(rng.randint(0, 4))
        else:  # mixed: paragraphs with citation marks, numbers, stray symbols
            paras = []
            for _ in range(rng.randint(2, 15)):
                p = rng.choice(paragraphs)
                if rng.random() < 0.3:
                    p = p.rstrip(".") + f"[{rng.randint(1, 40)}]."
                if rng.random() < 0.2:
                    p = "# " + p
                if rng.random() < 0.15:
                    p = p + " " + " ".join(str(rng.randint(0, 9999)) for _ in range(rng.randint(5, 60)))
                paras.append(p)
            text = rng.choice(["\n", "\n\n"]).join(paras)
        docs.append({"id": f"doc-{i:06d}", "text": text, "kind": kind})
    return docs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    with open(args.out, "w", encoding="utf-8") as f:
        for doc in make_documents(args.docs, args.seed):
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
