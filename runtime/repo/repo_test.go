package repo

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/artifact"
)

// gitRepo makes a repository with the git binary: a commit with files,
// tagged v1, and a second commit on main. It returns the repository's
// directory and the two commits.
func gitRepo(t *testing.T) (dir, first, second string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed (Debian package git)")
	}
	dir = t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho one\n"), 0o755)
	os.MkdirAll(filepath.Join(dir, "lib"), 0o755)
	os.WriteFile(filepath.Join(dir, "lib", "a.star"), []byte("A = 1\n"), 0o644)
	git("add", "-A")
	git("commit", "-qm", "one")
	git("tag", "v1")
	first = git("rev-parse", "HEAD")
	os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho two\n"), 0o755)
	git("commit", "-qam", "two")
	second = git("rev-parse", "HEAD")
	return dir, first, second
}

func TestResolve(t *testing.T) {
	dir, first, second := gitRepo(t)
	url := "file://" + dir
	var events []string
	c := &Cache{Dir: t.TempDir(), Emit: func(typ string, f map[string]any) { events = append(events, typ) }}
	ctx := context.Background()
	for _, tc := range []struct{ ref, want string }{
		{"", second},
		{"main", second},
		{"v1", first},
		{first[:10], first},
		{first, first},
		{strings.ToUpper(second), second},
	} {
		r, err := c.Resolve(ctx, url, tc.ref)
		if err != nil {
			t.Errorf("Resolve(%q) = %v, want commit %s", tc.ref, err, tc.want)
			continue
		}
		if r.Commit != tc.want {
			t.Errorf("Resolve(%q) = %s, want %s", tc.ref, r.Commit, tc.want)
		}
	}
	// A full SHA the cache holds needs no fetch: pinned commits are
	// fetched once.
	events = nil
	if _, err := c.Resolve(ctx, url, first); err != nil {
		t.Fatal(err)
	}
	if strings.Join(events, ",") != "git_cached" {
		t.Errorf("Resolve(full SHA in the cache) events = %v, want [git_cached]", events)
	}
	os.RemoveAll(dir)
	if r, err := c.Resolve(ctx, url, second); err != nil || r.Commit != second {
		t.Errorf("Resolve(full SHA, repository gone) = %v, %v; want it from the cache", r, err)
	}
}

func TestResolveErrors(t *testing.T) {
	dir, _, _ := gitRepo(t)
	c := &Cache{Dir: t.TempDir()}
	ctx := context.Background()
	for _, tc := range []struct {
		url, ref string
		class    builtins.Class
		msg      string
	}{
		{"file://" + dir, "nope", builtins.ClassJob, `no branch, tag or commit "nope" in the repository`},
		{"file://" + dir, "0123456789abcdef0123456789abcdef01234567", builtins.ClassJob, "no commit 0123456789abcdef0123456789abcdef01234567"},
		{"file://" + dir, "--upload-pack=x", builtins.ClassJob, "is not a branch, tag or commit name"},
		{"file:///nonexistent/repo.git", "", builtins.ClassInfra, "fetch file:///nonexistent/repo.git: git fetch:"},
		{"https://user:s3cret@127.0.0.1:1/r.git", "", builtins.ClassInfra, "fetch https://user:xxxxx@127.0.0.1:1/r.git"},
	} {
		_, err := c.Resolve(ctx, tc.url, tc.ref)
		if err == nil || builtins.ClassOf(err) != tc.class || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Resolve(%s, %q) = %v (class %s), want a %s error holding %q", tc.url, tc.ref, err, builtins.ClassOf(err), tc.class, tc.msg)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Resolve(%s) error shows the password: %v", tc.url, err)
		}
	}
	if _, err := (&Cache{}).Resolve(ctx, "file://"+dir, ""); builtins.ClassOf(err) != builtins.ClassInfra {
		t.Errorf("Resolve without a cache dir = %v, want an infrastructure error", err)
	}
}

func tarOf(t *testing.T, hdrs ...*tar.Header) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(h.Linkname)) // content carried in Linkname for brevity
			data := h.Linkname
			h.Linkname = ""
			tw.WriteHeader(h)
			tw.Write([]byte(data))
			continue
		}
		tw.WriteHeader(h)
	}
	tw.Close()
	return &b
}

func TestPack(t *testing.T) {
	src := tarOf(t,
		&tar.Header{Name: "pax_global_header", Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "abc"}},
		&tar.Header{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "a/run.sh", Typeflag: tar.TypeReg, Mode: 0o755, Linkname: "echo\n"},
		&tar.Header{Name: "./a/l", Typeflag: tar.TypeSymlink, Linkname: "run.sh"},
	)
	var kept string
	var out bytes.Buffer
	err := Pack(&out, src, "tree", func(n string) bool { return n == "a/run.sh" }, func(n string, d []byte) { kept = n + ":" + string(d) },
		func() ([]File, error) { return []File{{Name: "bin/x", Mode: 0o755, Data: []byte("x")}}, nil })
	if err != nil {
		t.Fatal(err)
	}
	if kept != "a/run.sh:echo\n" {
		t.Errorf("Pack kept %q, want a/run.sh's content", kept)
	}
	zr, err := gzip.NewReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name+" "+string(h.Typeflag)+" "+h.FileInfo().Mode().Perm().String())
	}
	want := []string{"tree/a/ 5 -rwxr-xr-x", "tree/a/run.sh 0 -rwxr-xr-x", "tree/a/l 2 ----------", "bin/x 0 -rwxr-xr-x"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Pack entries = %q, want %q", got, want)
	}

	for _, name := range []string{"../x", "a/../../x", "/etc/passwd"} {
		err := Pack(io.Discard, tarOf(t, &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "x"}), "tree", nil, nil, nil)
		if builtins.ClassOf(err) != builtins.ClassJob || !strings.Contains(err.Error(), name) {
			t.Errorf("Pack(entry %q) = %v, want a job error naming it", name, err)
		}
	}
}

func TestExtractConfined(t *testing.T) {
	outside := t.TempDir()
	dir := filepath.Join(t.TempDir(), "tree")
	// A symlink out of the tree, then a file written through it.
	src := tarOf(t,
		&tar.Header{Name: "ok.star", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "X = 1\n"},
		&tar.Header{Name: "out", Typeflag: tar.TypeSymlink, Linkname: outside},
		&tar.Header{Name: "out/evil", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "evil"},
	)
	err := Extract(src, dir)
	if err == nil {
		t.Errorf("Extract(a file through a symlink out of the tree) = nil, want an error")
	}
	if _, serr := os.Stat(filepath.Join(outside, "evil")); serr == nil {
		t.Errorf("Extract wrote %s, outside the tree", filepath.Join(outside, "evil"))
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ok.star")); string(b) != "X = 1\n" {
		t.Errorf("Extract: ok.star = %q, want its content", b)
	}
	if err := Extract(tarOf(t, &tar.Header{Name: "../x", Typeflag: tar.TypeReg, Linkname: "x"}), dir); err == nil {
		t.Errorf("Extract(../x) = nil, want an error")
	}
}

// A local repository runs its commit; uncommitted edits are reported.
func TestOpenLocalDirty(t *testing.T) {
	dir, _, second := gitRepo(t)
	jobDir := filepath.Dir(dir)
	c := &Cache{Dir: t.TempDir()}
	s, err := Open(context.Background(), c, nil, jobDir, filepath.Base(dir), "")
	if err != nil || s.Commit != second || s.Dirty || s.URL != "" {
		t.Fatalf("Open(clean local repo) = %+v, %v; want commit %s, not dirty, no URL", s, err, second)
	}
	os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho edited\n"), 0o755)
	if s, err = Open(context.Background(), c, nil, jobDir, filepath.Base(dir), ""); err != nil || !s.Dirty || s.Commit != second {
		t.Errorf("Open(edited local repo) = %+v, %v; want commit %s, dirty", s, err, second)
	}
}

func TestOpenTarball(t *testing.T) {
	jobDir := t.TempDir()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarOf(t, &tar.Header{Name: "run.sh", Typeflag: tar.TypeReg, Mode: 0o755, Linkname: "echo\n"}).Bytes())
	zw.Close()
	os.WriteFile(filepath.Join(jobDir, "suite.tar.gz"), gz.Bytes(), 0o644)
	s, err := Open(context.Background(), &Cache{}, nil, jobDir, "suite.tar.gz", "")
	if err != nil {
		t.Fatal(err)
	}
	if s.SHA256 == "" || s.Commit != "" || s.Size != int64(gz.Len()) {
		t.Errorf("Open(tarball) = %+v, want its sha256 and size, no commit", s)
	}
	rc, err := s.Tar(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h, err := tar.NewReader(rc).Next()
	rc.Close()
	if err != nil || h.Name != "run.sh" {
		t.Errorf("Open(tarball).Tar first entry = %v, %v; want run.sh", h, err)
	}
	// The same tarball by URL: downloaded into the artifact cache, its
	// URL and sha256 recorded.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(gz.Bytes()) }))
	defer srv.Close()
	u, err := Open(context.Background(), &Cache{}, &artifact.Cache{Dir: t.TempDir()}, jobDir, srv.URL+"/suite.tar.gz", "")
	if err != nil || u.SHA256 != s.SHA256 || u.URL != srv.URL+"/suite.tar.gz" {
		t.Errorf("Open(tarball URL) = %+v, %v; want sha256 %s and its URL", u, err, s.SHA256)
	}
	if _, err := Open(context.Background(), &Cache{}, nil, jobDir, "suite.tar.gz", "main"); builtins.ClassOf(err) != builtins.ClassJob {
		t.Errorf("Open(tarball, ref=main) = %v, want a job error", err)
	}
	if _, err := Open(context.Background(), &Cache{Dir: t.TempDir()}, nil, jobDir, "../elsewhere", ""); builtins.ClassOf(err) != builtins.ClassJob || !strings.Contains(err.Error(), "escapes the job's directory") {
		t.Errorf("Open(../elsewhere) = %v, want a job error", err)
	}
}

// httpBackend serves the repository dir (and those beside it) with git's
// own http-backend, as forges and cgit installs serve them.
func httpBackend(t *testing.T, dir string) http.Handler {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Skip("git --exec-path: ", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Skip("git-http-backend not installed: ", err)
	}
	return &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(dir), "GIT_HTTP_EXPORT_ALL=1"}, Stderr: io.Discard}
}

// A repository over HTTP from a real smart-HTTP server: git's own
// http-backend (CGI), as forges and cgit installs serve it.
func TestResolveHTTP(t *testing.T) {
	dir, first, second := gitRepo(t)
	srv := httptest.NewServer(httpBackend(t, dir))
	defer srv.Close()
	url := srv.URL + "/" + filepath.Base(dir)
	c := &Cache{Dir: t.TempDir()}
	for ref, want := range map[string]string{"": second, "v1": first, first: first} {
		r, err := c.Resolve(context.Background(), url, ref)
		if err != nil || r.Commit != want {
			t.Errorf("Resolve(%s, %q) = %v, %v; want commit %s", url, ref, r, err, want)
			continue
		}
		var tarball bytes.Buffer
		if err := r.Archive(context.Background(), &tarball); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(tarball.Bytes(), []byte("run.sh")) {
			t.Errorf("Archive(%s) lacks run.sh", r.Commit)
		}
	}
	_, err := c.Resolve(context.Background(), srv.URL+"/nope.git", "")
	if builtins.ClassOf(err) != builtins.ClassInfra || !strings.Contains(err.Error(), "fetch "+srv.URL+"/nope.git") {
		t.Errorf("Resolve(missing repository over HTTP) = %v, want an infrastructure error naming the URL", err)
	}
}

// A repository over HTTP behind basic authentication, its password in the
// URL: the fetch authenticates, and no command line basalt starts holds
// the password (any user of the machine can read one in /proc); git gets
// it from a credential helper that reads basalt's environment.
func TestResolveHTTPPasswordNotInArgv(t *testing.T) {
	dir, _, second := gitRepo(t)
	const user, password = "ci", "pa$$ 'w0rd\""
	h := httpBackend(t, dir)
	var authed atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		authed.Add(1)
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	argv := filepath.Join(t.TempDir(), "argv")
	wrapper := filepath.Join(t.TempDir(), "git")
	os.WriteFile(wrapper, []byte("#!/bin/sh\nprintf '%s\\n' \"$*\" >> "+argv+"\nexec git \"$@\"\n"), 0o755)
	c := &Cache{Dir: t.TempDir(), Git: wrapper}
	su, _ := url.Parse(srv.URL + "/" + filepath.Base(dir))
	su.User = url.UserPassword(user, password)
	u := su.String()
	r, err := c.Resolve(context.Background(), u, "")
	if err != nil || r.Commit != second {
		t.Fatalf("Resolve(%s) = %v, %v; want commit %s", Redact(u), r, err, second)
	}
	if authed.Load() == 0 {
		t.Fatal("the server saw no authenticated request")
	}
	data, _ := os.ReadFile(argv)
	if len(data) == 0 {
		t.Fatal("the git wrapper was not run")
	}
	for _, s := range []string{password, su.User.String()} {
		if strings.Contains(string(data), s) {
			t.Errorf("a git command line holds the password:\n%s", data)
		}
	}
	// A wrong password is refused, and says nothing of it.
	su.User = url.UserPassword(user, "nope")
	bad := su.String()
	if _, err := (&Cache{Dir: t.TempDir()}).Resolve(context.Background(), bad, ""); builtins.ClassOf(err) != builtins.ClassInfra || strings.Contains(err.Error(), "nope") {
		t.Errorf("Resolve(wrong password) = %v, want an infrastructure error without the password", err)
	}
}
