// Package artifact resolves the files a job names — its kernel, initrd,
// dtb, images and pushed files — to files on the dispatcher. Every caller
// (basalt check, pxe.serve, target.push, target.deploy_image, target.kexec
// and result.json's inputs) goes through it, so one rule holds everywhere:
//
//   - An http or https URL (IsURL) is downloaded once into the cache
//     (Cache.Fetch): the content at Dir/sha256/<hex>, named by its own
//     sha256, and Dir/url/<sha256 of the URL> holding that hex. A URL in
//     the index, or a sha256 given for it whose content is there, is not
//     asked for again, by this run or any later one.
//   - Anything else with "://" is refused: only http and https are fetched.
//   - Anything else is a path relative to the job file's directory (Resolve),
//     opened through os.Root: absolute paths (even ones inside the job
//     directory: a job must move with its directory), ".." leaving the
//     directory and symlinks pointing out of it are refused.
//
// A refused or missing path is the job's error (*PathError, class job). A
// URL that cannot be downloaded, or whose content does not have the sha256
// the job gave for it, is an infrastructure error naming the URL: the job
// names a source, and a server that answers 404 or serves other bytes is
// the lab's problem, as LAVA classes it. A job file that does not have the
// sha256 the job gave is the job's error: the job holds both.
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/basalt-lab/basalt/builtins"
)

// File is a resolved artifact, open for reading.
type File struct {
	*os.File
	// Src is the path or URL as the job gave it.
	Src string
	// Path is the file on the dispatcher: absolute, symlinks resolved (a
	// publisher may open it again by name).
	Path string
	Size int64
	// SHA256 is the hex digest of the content: known for a download, ""
	// for a job file until Sum.
	SHA256 string
}

// Sum returns f's sha256, reading the file once if it is not known yet.
// It leaves the read offset alone.
func (f *File) Sum() (string, error) {
	if f.SHA256 != "" {
		return f.SHA256, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f.File, 0, f.Size)); err != nil {
		return "", builtins.Infra(fmt.Errorf("hash %s: %w", f.Src, err))
	}
	f.SHA256 = hex.EncodeToString(h.Sum(nil))
	return f.SHA256, nil
}

// IsURL reports whether s is an http or https URL with a host: the one
// test of "URL or job path" in basalt.
func IsURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Base is the last element of a path or of a URL's path, for served names
// and messages; "file" when there is none.
func Base(src string) string {
	if IsURL(src) {
		if u, err := url.Parse(src); err == nil {
			src = u.Path
		}
	}
	b := path.Base(filepath.ToSlash(src))
	if b == "." || b == "/" || b == "" {
		return "file"
	}
	return b
}

// PathError is a job path the rules refuse, or that names no regular file.
type PathError struct {
	Path   string // as the job gave it
	Reason string
}

func (e *PathError) Error() string { return e.Path + ": " + e.Reason }

func refuse(name, reason string) error {
	return builtins.Job(&PathError{Path: name, Reason: reason})
}

// Resolve opens name, a path relative to jobDir, under the rules of the
// package doc. Errors are *PathError (class job), or an infrastructure
// error when jobDir itself cannot be opened.
func Resolve(jobDir, name string) (*File, error) {
	switch {
	case name == "":
		return nil, refuse(name, "empty path")
	case strings.Contains(name, "://"):
		return nil, refuse(name, "only http and https URLs are fetched")
	case filepath.IsAbs(name) || strings.HasPrefix(name, "/"):
		return nil, refuse(name, "absolute paths are refused; name a file relative to the job's directory")
	case jobDir == "":
		return nil, refuse(name, "no job directory to resolve it in")
	}
	clean := path.Clean(filepath.ToSlash(name))
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return nil, refuse(name, "escapes the job's directory")
	}
	root, err := os.OpenRoot(jobDir)
	if err != nil {
		return nil, builtins.Infra(fmt.Errorf("open job directory: %w", err))
	}
	defer root.Close()
	f, err := root.Open(clean)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, refuse(name, "no such file under the job's directory")
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		// os.Root says "path escapes from parent" for a symlink out.
		return nil, refuse(name, "refused: "+err.Error())
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, refuse(name, "not a regular file")
	}
	// os.Root has just shown the file to be inside jobDir; the real path
	// is for publishers that open it by name.
	real, err := filepath.EvalSymlinks(filepath.Join(jobDir, filepath.FromSlash(clean)))
	if err == nil {
		real, err = filepath.Abs(real)
	}
	if err != nil {
		f.Close()
		return nil, refuse(name, err.Error())
	}
	return &File{File: f, Src: name, Path: real, Size: st.Size()}, nil
}

// Open resolves src: an http(s) URL through c.Fetch, anything else through
// Resolve. want, when not "", is the sha256 (hex) src must have.
func Open(ctx context.Context, c *Cache, jobDir, src, want string) (*File, error) {
	want, err := normSum(want)
	if err != nil {
		return nil, builtins.Job(fmt.Errorf("%s: %w", src, err))
	}
	if IsURL(src) {
		if c == nil {
			return nil, builtins.Infra(fmt.Errorf("download %s: no cache directory configured", redacted(src)))
		}
		return c.Fetch(ctx, src, want)
	}
	f, err := Resolve(jobDir, src)
	if err != nil {
		return nil, err
	}
	if want != "" {
		got, err := f.Sum()
		if err != nil {
			f.Close()
			return nil, err
		}
		if got != want {
			f.Close()
			return nil, builtins.Job(fmt.Errorf("%s: sha256 is %s, want %s", src, got, want))
		}
	}
	return f, nil
}

// normSum checks a sha256 given by a job: "" or 64 hex digits.
func normSum(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", nil
	}
	if len(s) != 64 || strings.Trim(s, "0123456789abcdef") != "" {
		return "", fmt.Errorf("sha256 %q: want 64 hex digits", s)
	}
	return s, nil
}
