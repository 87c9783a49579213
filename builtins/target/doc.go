// Package target is the Starlark module "target": the shell of the booted
// system, driven through its serial console, and the file transfers
// between the dispatcher and the target over HTTP.
//
// Starlark functions:
//
//	target.run(cmd, timeout=None, check=True) -> struct(output, exit_code, raw)
//	target.fetch(path, sha256=None, timeout=None) -> struct(path, sha256, size)
//	target.push(src, dest, timeout=None) -> struct(dest, sha256, size)
//	target.deploy_image(src, disk, timeout=None) -> struct(disk, sha256, size, source_sha256, duration_ms)
//	target.kexec(kernel, initrd=None, append="", prompt=None, timeout=None)
//	target.ip(timeout=None) -> str
//
// # Commands
//
// Each command is typed as one line that prints a start marker, runs the
// command under eval with standard input from /dev/null, and prints an end
// marker carrying $?:
//
//	echo BAS""ALT-<token>-<n>-S;eval 'CMD'</dev/null;printf '\nBAS''ALT-<token>-<n>-E:%d\n' $?
//
// The marker is cut in two by an empty shell string in the typed line, so
// its echo never holds a whole marker; token is random per [Target]
// (Config.Token gives a recorded one to a replay) and n counts commands,
// so output left over from an earlier command cannot match. The output is exactly what the console showed between the
// markers, with the end marker's leading newline removed and "\r\n" read as
// "\n"; whole lines looking like printk output are left out (Result.Raw
// keeps them). Run then waits for the shell prompt so the next expect
// starts after it.
//
// # Files
//
// fetch never trusts a listener it did not start (a master image may run an
// httpd of its own on port 80): it copies the file on the target into a
// directory of its own beside a nonce file (procfs files stat to size 0,
// which busybox httpd would send as Content-Length), starts `busybox httpd
// -f` there in the background on a port it picks (a taken port makes httpd
// exit; another is tried), GETs the nonce (nonces and ports are drawn from
// a generator seeded with the token, so a replay types the same ones),
// downloads the copy with github.com/hashicorp/go-retryablehttp, resuming
// with a Range request after a dropped connection, and finally kills that
// httpd and removes the directory. The file is streamed into the result bundle (Recorder.Artifact)
// and checked against the given sha256 or the one sha256sum computes on the
// target for the copy. push,
// deploy_image and kexec have the dispatcher serve the source through a
// [Publisher] (the pxe backend's HTTP server) and the target fetch it with
// wget; the dispatcher reads each source once to learn its sha256 and, for
// .gz and .xz images, the sha256 and size of the decompressed image, and
// the target's sha256sum of what it wrote must agree.
package target
