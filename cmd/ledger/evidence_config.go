package main

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/booking-ledger/ledger/adapters/postgres"
)

// EvidenceConfig is the part of the configuration that keeps the evidence
// out of the runtime's reach: the two database roles and the signed
// checkpoints.
type EvidenceConfig struct {
	// MigrateDatabaseURL is the owner's URL (MIGRATE_DATABASE_URL), used by
	// `ledger migrate`, `ledger projections rebuild` and `serve --dev`;
	// empty means DATABASE_URL. `ledger serve` never uses it otherwise.
	MigrateDatabaseURL string
	// RuntimeRole is the role `ledger migrate` creates and grants, and
	// `serve --dev` connects as (LEDGER_RUNTIME_ROLE, default ledger_app).
	RuntimeRole string
	// SigningKeyFile is the Ed25519 note signer key written by `ledger
	// audit keygen` (LEDGER_SIGNING_KEY); with CheckpointDir, serve writes
	// signed checkpoints.
	SigningKeyFile string
	// CheckpointDir receives one file per checkpoint (LEDGER_CHECKPOINT_DIR).
	CheckpointDir string
	// CheckpointEvery and CheckpointInterval: a checkpoint after that many
	// sealed chain links or that long, whichever comes first
	// (LEDGER_CHECKPOINT_EVERY, default 10000; LEDGER_CHECKPOINT_INTERVAL,
	// default 60s).
	CheckpointEvery    int
	CheckpointInterval time.Duration
}

// loadEvidenceConfig reads the variables of EvidenceConfig.
func (c *Config) loadEvidenceConfig() error {
	c.MigrateDatabaseURL = os.Getenv("MIGRATE_DATABASE_URL")
	c.RuntimeRole = env("LEDGER_RUNTIME_ROLE", postgres.DefaultRuntimeRole)
	c.SigningKeyFile = os.Getenv("LEDGER_SIGNING_KEY")
	c.CheckpointDir = os.Getenv("LEDGER_CHECKPOINT_DIR")
	n, err := strconv.Atoi(env("LEDGER_CHECKPOINT_EVERY", "10000"))
	if err != nil || n < 1 {
		return fmt.Errorf("LEDGER_CHECKPOINT_EVERY: must be a positive integer")
	}
	c.CheckpointEvery = n
	if c.CheckpointInterval, err = time.ParseDuration(env("LEDGER_CHECKPOINT_INTERVAL", "60s")); err != nil || c.CheckpointInterval <= 0 {
		return fmt.Errorf("LEDGER_CHECKPOINT_INTERVAL: must be a positive duration")
	}
	return nil
}

// ownerURL is the URL `ledger migrate` connects with.
func (c Config) ownerURL() string {
	if c.MigrateDatabaseURL != "" {
		return c.MigrateDatabaseURL
	}
	return c.DatabaseURL
}

// runtimeRole is RuntimeRole with its default.
func (c Config) runtimeRole() string {
	if c.RuntimeRole == "" {
		return postgres.DefaultRuntimeRole
	}
	return c.RuntimeRole
}

// LogValue prints EvidenceConfig without secrets.
func (c EvidenceConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("migrate_database_url", postgres.Redact(c.MigrateDatabaseURL)),
		slog.String("runtime_role", c.RuntimeRole),
		slog.Bool("signing_key_set", c.SigningKeyFile != ""),
		slog.String("checkpoint_dir", c.CheckpointDir),
		slog.Int("checkpoint_every", c.CheckpointEvery),
		slog.Duration("checkpoint_interval", c.CheckpointInterval),
	)
}
