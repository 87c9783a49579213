// Package repo gets source trees onto the dispatcher: git repositories
// fetched with the git binary into the artifact cache and pinned to a
// commit, and tarballs. test.run_definition pushes such a tree to the
// target; libraries.star loads Starlark libraries from one.
//
// A repository is fetched into Cache.Dir/git/<sha256 of its URL>.git, a
// bare repository, under a flock (Cache.Dir/lock/git-<key>) so that runs
// sharing the cache fetch one URL one at a time. A ref that is a full
// commit SHA already in that repository is used without the network:
// pinned commits are fetched once. Any other ref (a branch, a tag, an
// abbreviated SHA, or none: the remote's HEAD) fetches first, since a
// branch moves.
package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/basalt-lab/basalt/builtins"
	"github.com/basalt-lab/basalt/runtime/artifact"
)

// Cache holds fetched repositories under Dir (the artifact cache). Its
// zero value has no Dir and refuses every repository.
type Cache struct {
	Dir string
	// Git is the git program; default "git" from $PATH.
	Git string
	// Emit receives "git_fetch" (url, ref, duration_ms) after each fetch
	// and "git_cached" (url, commit) when a pinned commit needed none;
	// nil discards them.
	Emit func(typ string, fields map[string]any)
}

// Repo is a repository resolved to one commit.
type Repo struct {
	URL    string // as given (credentials kept; use Shown for output)
	Commit string // full SHA
	gitDir string
	git    string
	// remote is URL less its password, which git gets from a credential
	// helper reading it from the environment: a command line is readable
	// by every user of the machine (/proc/PID/cmdline), an environment
	// only by its owner.
	remote, password string
}

// Shown is the repository's URL with any password removed.
func (r *Repo) Shown() string { return Redact(r.URL) }

var fullSHA = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// IsCommit reports whether s is a full commit SHA (SHA-1 or SHA-256).
func IsCommit(s string) bool { return fullSHA.MatchString(s) }

// Redact removes the password of a URL, for messages and result.json.
func Redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	return p.Redacted()
}

// Resolve fetches the repository at rawURL (any URL git fetches: file://,
// https://, ssh; or a local path) as needed and resolves ref to a commit.
// ref "" is the remote's HEAD. A repository that cannot be fetched is an
// infrastructure error naming the URL; a ref it does not have is a job
// error naming both.
func (c *Cache) Resolve(ctx context.Context, rawURL, ref string) (*Repo, error) {
	shown := Redact(rawURL)
	if c.Dir == "" {
		return nil, builtins.Infra(fmt.Errorf("fetch %s: no cache directory configured", shown))
	}
	git := c.Git
	if git == "" {
		git = "git"
	}
	if _, err := exec.LookPath(git); err != nil {
		return nil, builtins.Infra(fmt.Errorf("fetch %s: the git program is not installed: %w", shown, err))
	}
	sum := sha256.Sum256([]byte(rawURL))
	key := hex.EncodeToString(sum[:16])
	r := &Repo{URL: rawURL, gitDir: filepath.Join(c.Dir, "git", key+".git"), git: git, remote: rawURL}
	if p, err := url.Parse(rawURL); err == nil && p.User != nil {
		if pw, ok := p.User.Password(); ok {
			r.password = pw
			p.User = url.User(p.User.Username())
			r.remote = p.String()
		}
	}
	locks := filepath.Join(c.Dir, "lock")
	if err := os.MkdirAll(locks, 0o755); err != nil {
		return nil, builtins.Infra(fmt.Errorf("fetch %s: %w", shown, err))
	}
	unlock, err := artifact.LockFile(ctx, filepath.Join(locks, "git-"+key))
	if err != nil {
		return nil, infraOrCanceled(ctx, fmt.Errorf("fetch %s: lock the cache: %w", shown, err))
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(r.gitDir, "HEAD")); err != nil {
		os.RemoveAll(r.gitDir) // a fetch that died half way
		if _, err := r.run(ctx, nil, "init", "--quiet", "--bare", r.gitDir); err != nil {
			return nil, builtins.Infra(fmt.Errorf("fetch %s: create the cache repository: %w", shown, err))
		}
	}
	ref = strings.TrimSpace(ref)
	if IsCommit(strings.ToLower(ref)) {
		ref = strings.ToLower(ref)
		if r.hasCommit(ctx, ref) {
			r.Commit = ref
			c.emit("git_cached", map[string]any{"url": shown, "commit": ref})
			return r, nil
		}
	}
	start := time.Now()
	// Every branch and tag, and HEAD under a name of ours: a later ref of
	// the same repository resolves from the cache's copy.
	if _, err := r.run(ctx, nil, "fetch", "--quiet", "--prune", "--no-tags", "--", r.remote,
		"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", "+HEAD:refs/basalt/HEAD"); err != nil {
		if ctx.Err() != nil {
			return nil, infraOrCanceled(ctx, fmt.Errorf("fetch %s: %w", shown, ctx.Err()))
		}
		return nil, builtins.Infra(fmt.Errorf("fetch %s: %w", shown, err))
	}
	c.emit("git_fetch", map[string]any{"url": shown, "ref": ref, "duration_ms": time.Since(start).Milliseconds()})
	if IsCommit(ref) {
		if !r.hasCommit(ctx, ref) {
			// A commit no branch or tag reaches: servers that allow it
			// (uploadpack.allowAnySHA1InWant, file:// and most forges)
			// give it when asked by name.
			r.run(ctx, nil, "fetch", "--quiet", "--no-tags", "--", r.remote, ref)
		}
		if !r.hasCommit(ctx, ref) {
			return nil, builtins.Job(fmt.Errorf("%s: no commit %s in the repository", shown, ref))
		}
		r.Commit = ref
		return r, nil
	}
	candidates := []string{"refs/basalt/HEAD"}
	if ref != "" {
		if strings.HasPrefix(ref, "-") || strings.ContainsAny(ref, " \t\n:^~") {
			return nil, builtins.Job(fmt.Errorf("%s: ref %q is not a branch, tag or commit name", shown, ref))
		}
		candidates = []string{"refs/tags/" + ref, "refs/heads/" + ref, ref}
	}
	for _, cand := range candidates {
		out, err := r.run(ctx, nil, "rev-parse", "--verify", "--quiet", cand+"^{commit}")
		if err == nil {
			r.Commit = strings.TrimSpace(string(out))
			return r, nil
		}
	}
	if ref == "" {
		return nil, builtins.Job(fmt.Errorf("%s: the repository has no HEAD commit (is it empty?)", shown))
	}
	return nil, builtins.Job(fmt.Errorf("%s: no branch, tag or commit %q in the repository", shown, ref))
}

// hasCommit reports whether the cache's repository holds commit sha.
func (r *Repo) hasCommit(ctx context.Context, sha string) bool {
	_, err := r.run(ctx, nil, "cat-file", "-e", sha+"^{commit}")
	return err == nil
}

// Archive writes the commit's tree to w as a tar stream (git archive).
func (r *Repo) Archive(ctx context.Context, w io.Writer) error {
	if _, err := r.run(ctx, w, "archive", "--format=tar", r.Commit); err != nil {
		return builtins.Infra(fmt.Errorf("archive %s at %s: %w", r.Shown(), r.Commit, err))
	}
	return nil
}

// run runs git in the cache repository. Its standard output goes to
// stdout, or is returned when stdout is nil; a failure's error holds the
// last line git wrote to standard error.
func (r *Repo) run(ctx context.Context, stdout io.Writer, args ...string) ([]byte, error) {
	// protocol.file.allow: git 2.38.1 refuses file:// in some paths by
	// default (CVE-2022-39253); a local test repository is a plain source.
	full := append([]string{"-c", "protocol.file.allow=always", "-c", "core.hooksPath=/dev/null"}, args...)
	if args[0] != "init" {
		full = append([]string{"--git-dir", r.gitDir}, full...)
	}
	cmd := exec.CommandContext(ctx, r.git, full...)
	// Never ask for a password on a terminal, never read the user's or
	// the system's git configuration (a url.insteadOf there would fetch
	// something other than what the job names).
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_ASKPASS=", "SSH_ASKPASS=")
	if r.password != "" {
		// gitcredentials(7): the empty value clears any helper, then
		// ours answers "get" with the password from the environment.
		cmd.Args = slices.Insert(cmd.Args, 1, "-c", "credential.helper=",
			"-c", `credential.helper=!f() { test "$1" = get && printf 'password=%s\n' "$BASALT_GIT_PASSWORD"; }; f`)
		cmd.Env = append(cmd.Env, "BASALT_GIT_PASSWORD="+r.password)
	}
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.Stderr = &errb
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			msg = strings.TrimSpace(msg[i+1:])
		}
		if msg != "" {
			return nil, fmt.Errorf("git %s: %s", args[0], r.scrub(msg))
		}
		return nil, fmt.Errorf("git %s: %w", args[0], err)
	}
	return out.Bytes(), nil
}

// scrub removes the URL's password from a message of git's.
func (r *Repo) scrub(msg string) string {
	if p, err := url.Parse(r.URL); err == nil && p.User != nil {
		if pw, ok := p.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}

func (c *Cache) emit(typ string, fields map[string]any) {
	if c.Emit != nil {
		c.Emit(typ, fields)
	}
}

func infraOrCanceled(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), context.Canceled) {
		return &builtins.Error{Class: builtins.ClassCanceled, Err: err}
	}
	return builtins.Infra(err)
}
