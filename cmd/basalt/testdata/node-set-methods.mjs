// gitlab-ci-local 4.75.1 is bundled for Node 22 and calls the Set methods of
// ES2025 (Set.prototype.union ...), which Node 20 lacks. TestGitLabCI preloads
// this file (node --import) when the node on PATH has no Set.prototype.union.
const P = Set.prototype;
const def = (n, f) => { if (!P[n]) Object.defineProperty(P, n, { value: f, writable: true, configurable: true }); };
def("union", function (o) { const r = new Set(this); for (const x of o.keys()) r.add(x); return r; });
def("intersection", function (o) { const r = new Set(); for (const x of this) if (o.has(x)) r.add(x); return r; });
def("difference", function (o) { const r = new Set(); for (const x of this) if (!o.has(x)) r.add(x); return r; });
def("symmetricDifference", function (o) { const r = new Set(this); for (const x of o.keys()) { if (this.has(x)) r.delete(x); else r.add(x); } return r; });
def("isSubsetOf", function (o) { for (const x of this) if (!o.has(x)) return false; return true; });
def("isSupersetOf", function (o) { for (const x of o.keys()) if (!this.has(x)) return false; return true; });
def("isDisjointFrom", function (o) { for (const x of this) if (o.has(x)) return false; return true; });
