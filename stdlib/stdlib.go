// Package stdlib embeds the Starlark libraries loaded as @stdlib//name.star
// and the built-in device types (device-types/*.star).
package stdlib

import "embed"

// FS holds every *.star file of the standard library, with slash paths
// relative to this directory ("master.star", "device-types/highbank.star").
//
//go:embed *.star device-types/*.star
var FS embed.FS
