// Package migrations holds the numbered SQL migrations of the ledger,
// embedded in the binary and applied by `ledger migrate` and at `ledger serve`
// start (adapters/postgres.Migrate).
//
// Rules for new files: the next free number, one goose Up section, every
// constraint and index named, and no edits to a file that has shipped.
package migrations

import "embed"

// FS holds the *.sql files of this directory.
//
//go:embed *.sql
var FS embed.FS
