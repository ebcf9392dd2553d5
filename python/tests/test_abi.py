"""The package's cffi declarations against the C headers: every struct's size and field offsets,
and every enum constant, as a C compiler sees them.  cffi's ABI mode trusts the declarations, so a
field added to a header without the same change in nkern/_lib.py would corrupt memory; this test
fails first, naming the type and the field."""
import os
import shutil
import subprocess

import pytest

from nkern._lib import ffi

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HEADERS = ["nkern.h", "nk_data.h", "nk_infer.h", "nk_theory.h"]


def _layouts():
    """(type name, [(field, offset)], size) for each struct typedef cffi knows, and the enums."""
    structs, enums = [], {}
    for name in ffi.list_types()[0]:  # typedef names
        t = ffi.typeof(name)
        if t.kind == "struct" and t.fields is not None:
            structs.append((name, [(f, v.offset) for f, v in t.fields], ffi.sizeof(t)))
        elif t.kind == "enum":
            enums.update(t.relements)
    return structs, enums


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_struct_layouts_and_enums_match_headers(tmp_path):
    structs, enums = _layouts()
    assert structs and enums
    lines = ["#include <stddef.h>", "#include <stdio.h>"]
    lines += ['#include "%s"' % h for h in HEADERS]
    lines.append("int main(void) {")
    for name, fields, _ in structs:
        lines.append('printf("%s %%zu\\n", sizeof(%s));' % (name, name))
        for f, _ in fields:
            lines.append('printf("%s.%s %%zu\\n", offsetof(%s, %s));' % (name, f, name, f))
    for e in sorted(enums):
        lines.append('printf("%s %%ld\\n", (long)%s);' % (e, e))
    lines.append("return 0; }")
    src, exe = tmp_path / "abi.c", tmp_path / "abi"
    src.write_text("\n".join(lines) + "\n")
    subprocess.run(["cc", "-std=c11", "-I", os.path.join(ROOT, "include"), str(src), "-o", str(exe)], check=True)
    seen = dict(line.rsplit(" ", 1) for line in subprocess.run([str(exe)], check=True, capture_output=True,
                                                                text=True).stdout.splitlines())
    wrong = []
    for name, fields, size in structs:
        if int(seen[name]) != size:
            wrong.append("%s: size %s in C, %d in nkern/_lib.py" % (name, seen[name], size))
        for f, off in fields:
            if int(seen["%s.%s" % (name, f)]) != off:
                wrong.append("%s.%s: offset %s in C, %d in nkern/_lib.py" % (name, f, seen[name + "." + f], off))
    for e, v in enums.items():
        if int(seen[e]) != v:
            wrong.append("%s = %s in C, %d in nkern/_lib.py" % (e, seen[e], v))
    assert not wrong, "; ".join(wrong)
