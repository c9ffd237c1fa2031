"""Import cycles between the files of src/: prints each cycle and exits 1, or says there are none.

    python3 .ci/import_cycles.py [SRC]

A file imports another when it names an item of that file's module by path (its inline unit
tests left out): `use crate::a::b`,
`crate::a::b::f(...)`, `super::x`, `self::x` or a child module's name (`use child::Item`). The
crate root (lib.rs, which only declares modules and re-exports) is left out. Cycles are the
strongly connected components of that graph (Tarjan), so a module whose files lean on each other
in a circle shows up however long the circle is.
"""
import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
SRC = os.path.normpath(SRC)


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel == ["lib"]:
        return []
    return rel


def file_of(segments):
    if not segments:
        return None
    base = os.path.join(SRC, *segments)
    for candidate in (base + ".rs", os.path.join(base, "mod.rs")):
        if os.path.isfile(candidate):
            return candidate
    return None


def resolve(segments):
    """The file of the longest prefix of `segments` that is a module file."""
    for k in range(len(segments), 0, -1):
        found = file_of(segments[:k])
        if found:
            return found
    return None


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] if not line.lstrip().startswith("//") else "" for line in text.split("\n"))


PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+)")
GROUP = re.compile(r"\buse\s+(crate|super|self)((?:::\w+)*)::\{([^;]*)\}\s*;", re.S)
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)


def absolute(module, head, rest):
    if head == "crate":
        return rest
    if head == "self":
        return module + rest
    # super (possibly repeated: super::super::x)
    base = module[:-1]
    while rest and rest[0] == "super":
        base, rest = base[:-1], rest[1:]
    return base + rest


def edges_of(path):
    text = strip_comments(open(path, encoding="utf-8").read())
    # A file's unit tests (an inline `mod tests` at its end) are not part of its design, and
    # their `super::` is the file itself.
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)[0]
    module = module_of(path)
    children = set(MOD_DECL.findall(text))
    targets = set()
    for head, rest, items in GROUP.findall(text):
        prefix = [s for s in rest.split("::") if s]
        for item in re.split(r",", items):
            item = item.strip().split(" as ")[0].strip()
            if not item or item == "self":
                segments = prefix
            else:
                segments = prefix + [s for s in re.split(r"::", item.strip("{} ")) if s and s != "self"]
            targets.add(resolve(absolute(module, head, segments)))
    for head, rest in PATH.findall(text):
        targets.add(resolve(absolute(module, head, [s for s in rest.split("::") if s])))
    # A child module named by a relative path: `use child::{a, b}`, `child::item(...)`.
    for child in children:
        for rest in re.findall(r"(?<![:\w])" + child + r"((?:::\w+)+|::\{)", text):
            segments = [s for s in rest.split("::") if s and s != "{"]
            targets.add(resolve(module + [child] + segments))
    targets.discard(None)
    targets.discard(path)
    targets.discard(os.path.join(SRC, "lib.rs"))
    return targets


def main():
    files = []
    for root, _, names in os.walk(SRC):
        files += [os.path.join(root, n) for n in names if n.endswith(".rs")]
    files = [f for f in files if os.path.basename(f) != "main.rs" or os.path.dirname(f) != SRC]
    graph = {f: edges_of(f) for f in files if f != os.path.join(SRC, "lib.rs")}

    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    edges = sum(len(t) for t in graph.values())
    if not cycles:
        print(f"no import cycles among {len(graph)} files of {SRC} ({edges} imports)")
        return 0
    for component in cycles:
        rel = [os.path.relpath(f, SRC) for f in component]
        print("cycle: " + ", ".join(rel))
        for f in component:
            for t in sorted(graph[f] & set(component)):
                print(f"  {os.path.relpath(f, SRC)} -> {os.path.relpath(t, SRC)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
