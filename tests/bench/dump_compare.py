"""Compare two dumps of tests/bench/dump_participant_pages.py: `python tests/bench/dump_compare.py <before> <after>`
(whitespace normalised, the random kit codes, ASC-DU arms and EASC-RA cohort placebos blanked); prints the first differences."""
import sys, os, re, difflib
a, b = sys.argv[1], sys.argv[2]
def norm(text):
    """Whitespace collapsed; the random parts blanked: kit codes, ASC-DU's arms, EASC-RA's placebo within a cohort."""
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\bK[A-Z0-9]{6}\b", "KXXXXXX", text)
    text = re.sub(r'allocation">(AdMSC|Placebo) ', 'allocation">ARM ', text)
    return re.sub(r'(allocation">[^<]*?) – [^<(]+ \(', r"\1 – X (", text).strip()
diff = 0
for f in sorted(os.listdir(a)):
    x = norm(open(os.path.join(a, f)).read()); y = norm(open(os.path.join(b, f)).read())
    if x != y:
        diff += 1
        if diff <= 3:
            sm = difflib.SequenceMatcher(None, x, y, autojunk=False)
            for op in sm.get_opcodes():
                if op[0] != "equal":
                    print(f, op[0], repr(x[op[1]-80:op[2]+80]), "\n   ->", repr(y[op[3]-80:op[4]+80]))
                    break
print("files", len(os.listdir(a)), "different", diff)
