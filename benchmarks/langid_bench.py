"""Accuracy and speed of language-ID libraries that ship their model in a PyPI package.

Labelled sample: Django's translation catalogues (``django/conf/locale/<ll>/
LC_MESSAGES/*.po`` and ``django/contrib/*/locale/...`` inside the Django 5.2.19
wheel, BSD-3-Clause), i.e. human translations of the same UI messages into each
language; English documents are made of the ``msgid`` source strings.  Per
language, the ``msgstr`` strings (format placeholders and HTML tags removed)
are joined with ". " in file order into documents of at least ``--min_chars``
(200) characters; at most ``--per_lang`` (50) documents per language.

    pip download django==5.2.19 --no-deps -d benchmarks/data
    pip install py3langid pycld2 cld3-py
    python -m benchmarks.langid_bench --wheel benchmarks/data/django-5.2.19-py3-none-any.whl

Reports accuracy (top-1 language == label) and documents per CPU second
(``time.process_time``, after a warm-up call) for each library.
"""
import argparse
import re
import time
import zipfile
from collections import defaultdict

# our label (ISO 639-1) -> Django locale folder
LANGS = {"en": "de", "de": "de", "fr": "fr", "es": "es", "it": "it", "pt": "pt", "nl": "nl",
         "ru": "ru", "pl": "pl", "zh": "zh_Hans", "ja": "ja", "ko": "ko", "ar": "ar", "tr": "tr",
         "sv": "sv", "vi": "vi"}
_PLACEHOLDER = re.compile(r"%\([^)]*\)[sd]|%[sd]|\{[^}]*\}|<[^>]+>|&\w+;")


def _po_strings(data: str, which: str):
    out, cur, key = [], [], None
    for line in data.splitlines():
        line = line.strip()
        m = re.match(r'(msgid|msgstr)(?:\[\d\])? "(.*)"$', line)
        if m:
            if key == which and cur:
                out.append("".join(cur))
            key, cur = m.group(1), [m.group(2)]
        elif line.startswith('"') and key:
            cur.append(line[1:-1])
        else:
            if key == which and cur:
                out.append("".join(cur))
            key, cur = None, []
    if key == which and cur:
        out.append("".join(cur))
    return [s for s in out if s]


def build_sample(wheel: str, min_chars: int = 200, per_lang: int = 50):
    """``[(label, text)]`` from the Django wheel (see module docstring)."""
    strings = defaultdict(list)
    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".po"))
        for label, folder in LANGS.items():
            which = "msgid" if label == "en" else "msgstr"
            for n in names:
                if f"/locale/{folder}/LC_MESSAGES/" in n:
                    for s in _po_strings(z.read(n).decode("utf-8"), which):
                        s = _PLACEHOLDER.sub("", s.replace("\\n", " ").replace('\\"', '"')).strip()
                        if s.startswith("Project-Id-Version:"):  # the catalogue header, not a message
                            continue
                        if len(s) >= 3 and s not in strings[label]:
                            strings[label].append(s)
    sample = []
    for label, items in strings.items():
        docs, cur = [], []
        for s in items:
            cur.append(s)
            text = ". ".join(cur)
            if len(text) >= min_chars:
                docs.append(text)
                cur = []
                if len(docs) >= per_lang:
                    break
        sample += [(label, d) for d in docs]
    return sample


def detectors():
    out = {}
    try:
        import py3langid
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
        ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        out["py3langid 0.4 (142 codes)"] = lambda t: ident.classify(t)[0]
        del py3langid
    except ImportError:
        pass
    try:
        import pycld2

        def cld2(t):
            _, _, details = pycld2.detect(t)
            code = details[0][1]
            return {"zh-Hant": "zh", "un": "und"}.get(code, code)
        out["pycld2 0.42"] = cld2
    except ImportError:
        pass
    try:
        import gcld3
        det = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=4000)
        out["cld3-py 3.1 (gcld3)"] = lambda t: det.FindLanguage(t).language.split("-")[0]
    except ImportError:
        pass
    try:
        from transforms.reduction.filters.langid import detect_language
        out["ours: transforms.reduction.filters.langid.detect_language"] = lambda t: detect_language(t)[0]
    except ImportError:
        pass
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", required=True)
    parser.add_argument("--min_chars", type=int, default=200)
    parser.add_argument("--per_lang", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    sample = build_sample(args.wheel, args.min_chars, args.per_lang)
    per = defaultdict(int)
    for label, _ in sample:
        per[label] += 1
    print(f"sample: {len(sample)} documents, {len(per)} languages "
          f"({', '.join(f'{k}:{v}' for k, v in sorted(per.items()))}), "
          f"mean {sum(len(t) for _, t in sample) / len(sample):.0f} chars")
    print("| library | accuracy | wrong | docs / CPU s | worst language (accuracy) |")
    print("|---|---:|---:|---:|---|")
    for name, fn in detectors().items():
        fn(sample[0][1])
        best = None
        for _ in range(args.repeats):
            t0 = time.process_time()
            preds = [fn(t) for _, t in sample]
            cpu = time.process_time() - t0
            best = cpu if best is None else min(best, cpu)
        right = defaultdict(int)
        for (label, _), p in zip(sample, preds):
            right[label] += p == label
        acc = sum(right.values()) / len(sample)
        worst = min(per, key=lambda k: right[k] / per[k])
        print(f"| {name} | {acc:.4f} | {len(sample) - sum(right.values())} | {len(sample) / best:,.0f} "
              f"| {worst} ({right[worst] / per[worst]:.2f}) |")


if __name__ == "__main__":
    main()
