package repo

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/artifact"
)

// Source is a tree the dispatcher got: a repository at a commit or a
// tarball, with what result.json records of it.
type Source struct {
	Name   string // as the job gave it (a URL redacted, or a path)
	URL    string // the repository's URL or the tarball's, redacted; "" for a local path
	Commit string // the repository's commit; "" for a tarball
	SHA256 string // the tarball's sha256; "" for a repository
	Size   int64  // the tarball's size
	// Dirty is a local repository whose work tree has changes not in the
	// commit used (uncommitted edits of tracked files).
	Dirty bool
	// open returns the tree as a tar stream.
	open func(ctx context.Context) (io.ReadCloser, error)
}

// Tar returns the tree as an uncompressed tar stream; the caller closes it.
func (s *Source) Tar(ctx context.Context) (io.ReadCloser, error) { return s.open(ctx) }

// IsTarball reports whether name (a path or URL) names a tarball by its
// extension: .tar, .tar.gz, .tgz.
func IsTarball(name string) bool {
	n := strings.ToLower(name)
	if u, _, ok := strings.Cut(n, "?"); ok {
		n = u
	}
	return strings.HasSuffix(n, ".tar") || strings.HasSuffix(n, ".tar.gz") || strings.HasSuffix(n, ".tgz")
}

// Open gets src on the dispatcher: a tarball (by its extension; an http(s)
// URL downloaded through files, or a path under jobDir) or a git
// repository (a URL, or a path under jobDir) resolved to ref. Errors are
// classed as Resolve's and package artifact's are.
func Open(ctx context.Context, c *Cache, files *artifact.Cache, jobDir, src, ref string) (*Source, error) {
	if strings.TrimSpace(src) == "" {
		return nil, builtins.Job(errors.New("empty repository"))
	}
	if IsTarball(src) {
		if ref != "" {
			return nil, builtins.Job(fmt.Errorf("%s: a tarball has no ref (got ref=%q)", Redact(src), ref))
		}
		f, err := artifact.Open(ctx, files, jobDir, src, "")
		if err != nil {
			return nil, err
		}
		sum, err := f.Sum()
		if err != nil {
			f.Close()
			return nil, err
		}
		f.Close()
		p := f.Path
		s := &Source{Name: Redact(src), SHA256: sum, Size: f.Size}
		if artifact.IsURL(src) {
			s.URL = Redact(src)
		}
		gz := strings.HasSuffix(strings.ToLower(artifact.Base(src)), "gz")
		s.open = func(context.Context) (io.ReadCloser, error) {
			f, err := os.Open(p)
			if err != nil {
				return nil, builtins.Infra(fmt.Errorf("open %s: %w", s.Name, err))
			}
			if !gz {
				return f, nil
			}
			zr, err := gzip.NewReader(f)
			if err != nil {
				f.Close()
				return nil, builtins.Job(fmt.Errorf("%s: not a gzip file: %w", s.Name, err))
			}
			return readCloser{zr, f}, nil
		}
		return s, nil
	}
	u := src
	local := !strings.Contains(src, "://") && !strings.Contains(src, "@")
	if local {
		abs, err := underDir(jobDir, src)
		if err != nil {
			return nil, err
		}
		u = abs
	}
	r, err := c.Resolve(ctx, u, ref)
	if err != nil {
		if local {
			// Name the path as the job gave it, not the absolute one.
			return nil, relabel(err, u, src)
		}
		return nil, err
	}
	s := &Source{Name: Redact(src), Commit: r.Commit}
	if !local {
		s.URL = Redact(src)
	} else {
		s.Dirty = dirty(ctx, c, u)
	}
	s.open = func(ctx context.Context) (io.ReadCloser, error) { return r.Tar(ctx), nil }
	return s, nil
}

// Tar returns the commit's tree as a tar stream (git archive, running
// until the stream is read to its end or closed).
func (r *Repo) Tar(ctx context.Context) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(r.Archive(ctx, pw)) }()
	return pr
}

// dirty reports whether the work tree at dir has uncommitted changes to
// tracked files (git status --porcelain); an error says no.
func dirty(ctx context.Context, c *Cache, dir string) bool {
	git := c.Git
	if git == "" {
		git = "git"
	}
	cmd := exec.CommandContext(ctx, git, "-C", dir, "status", "--porcelain", "--untracked-files=no")
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_OPTIONAL_LOCKS=0")
	out, err := cmd.Output()
	return err == nil && len(bytes.TrimSpace(out)) > 0
}

type readCloser struct {
	io.Reader
	c io.Closer
}

func (r readCloser) Close() error { return r.c.Close() }

// relabel rewrites the absolute path in err's message to the job's name
// for it, keeping the class.
func relabel(err error, abs, name string) error {
	msg := strings.ReplaceAll(err.Error(), abs, name)
	return &builtins.Error{Class: builtins.ClassOf(err), Err: errors.New(msg)}
}

// underDir returns the absolute path of name, a directory under jobDir
// that must stay there (symlinks resolved).
func underDir(jobDir, name string) (string, error) {
	if filepath.IsAbs(name) {
		return "", builtins.Job(fmt.Errorf("%s: absolute paths are refused; name a repository under the job's directory or by URL", name))
	}
	clean := filepath.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", builtins.Job(fmt.Errorf("%s: escapes the job's directory", name))
	}
	if jobDir == "" {
		return "", builtins.Job(fmt.Errorf("%s: no job directory to find it in", name))
	}
	root, err := filepath.EvalSymlinks(jobDir)
	if err != nil {
		return "", builtins.Infra(fmt.Errorf("job directory: %w", err))
	}
	p, err := filepath.EvalSymlinks(filepath.Join(root, clean))
	if err != nil {
		return "", builtins.Job(fmt.Errorf("%s: no such repository under the job's directory", name))
	}
	if rel, err := filepath.Rel(root, p); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", builtins.Job(fmt.Errorf("%s: a symlink out of the job's directory", name))
	}
	return p, nil
}

// File is an extra file for Pack.
type File struct {
	Name string // slash path in the archive
	Mode int64
	Data []byte
}

// Pack reads the tar stream src and writes to w a gzip'd tar that busybox
// tar extracts: directories, regular files and symlinks of src under
// prefix (GNU headers for long names; owners, pax headers and other entry
// types dropped), then the files extra returns, called once the tree is
// read. want, if not nil, sees the name (relative to the tree) of every
// entry it packs; keep is called with the name and content of each regular
// file want returned true for. An entry naming a path outside the tree is
// a job error naming it.
func Pack(w io.Writer, src io.Reader, prefix string, want func(string) bool, keep func(name string, data []byte), extra func() ([]File, error)) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	tr := tar.NewReader(src)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return builtins.Job(fmt.Errorf("read the tree: %w", err))
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if strings.HasPrefix(h.Name, "/") || hasDotDot(h.Name) {
			return builtins.Job(fmt.Errorf("tree entry %q leaves the tree", h.Name))
		}
		if name == "" {
			continue
		}
		out := &tar.Header{Name: path.Join(prefix, name), Mode: h.Mode & 0o7777, ModTime: h.ModTime, Format: tar.FormatGNU}
		switch h.Typeflag {
		case tar.TypeDir:
			out.Typeflag, out.Name = tar.TypeDir, out.Name+"/"
		case tar.TypeReg:
			out.Typeflag, out.Size = tar.TypeReg, h.Size
		case tar.TypeSymlink:
			out.Typeflag, out.Linkname = tar.TypeSymlink, h.Linkname
		default:
			continue // pax headers, hard links, devices: not in a test tree
		}
		if err := tw.WriteHeader(out); err != nil {
			return fmt.Errorf("pack %s: %w", name, err)
		}
		wanted := want != nil && want(name)
		if out.Typeflag != tar.TypeReg {
			continue
		}
		var r io.Reader = tr
		var kept []byte
		if wanted {
			b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			if err != nil {
				return builtins.Job(fmt.Errorf("read %s: %w", name, err))
			}
			kept, r = b, strings.NewReader(string(b))
		}
		if _, err := io.Copy(tw, r); err != nil {
			return builtins.Job(fmt.Errorf("read %s: %w", name, err))
		}
		if kept != nil && keep != nil {
			keep(name, kept)
		}
	}
	var files []File
	if extra != nil {
		var err error
		if files, err = extra(); err != nil {
			return err
		}
	}
	now := time.Unix(0, 0)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.Name, Mode: f.Mode, Size: int64(len(f.Data)), Typeflag: tar.TypeReg, ModTime: now, Format: tar.FormatGNU}); err != nil {
			return fmt.Errorf("pack %s: %w", f.Name, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return fmt.Errorf("pack %s: %w", f.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	return zw.Close()
}

func hasDotDot(name string) bool {
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return true
		}
	}
	return false
}

// Extract writes the tar stream src into dir (created), confined to it by
// os.Root: no entry is written outside dir, whatever its name or the
// symlinks before it. Symlinks are created as they are; os.Root refuses
// to follow one out of dir when the tree is read.
func Extract(src io.Reader, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(src)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the tree: %w", err)
		}
		if strings.HasPrefix(h.Name, "/") || hasDotDot(h.Name) {
			return fmt.Errorf("tree entry %q leaves the tree", h.Name)
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if name == "" {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
		case tar.TypeReg:
			if d := path.Dir(name); d != "." {
				if err := root.MkdirAll(d, 0o755); err != nil {
					return fmt.Errorf("extract %s: %w", name, err)
				}
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(h.Mode&0o755|0o600))
			if err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
		}
	}
}
