package main

import (
	"context"
	"database/sql"
	"errors"

	"github.com/spf13/cobra"

	"github.com/booking-ledger/ledger/adapters/postgres/audit"
	"github.com/booking-ledger/ledger/adapters/postgres/audit/checkpoints"
	"github.com/booking-ledger/ledger/cmd/ledger/auditcmd"
)

// newAuditCmd is `ledger audit`, the commands of package cmd/ledger/auditcmd,
// on the configuration of the environment.
func newAuditCmd() *cobra.Command {
	return auditcmd.NewCommand(func() (auditcmd.Env, error) {
		cfg, err := loadConfig()
		if err != nil {
			return auditcmd.Env{}, err
		}
		return auditcmd.Env{
			DatabaseURL:    cfg.DatabaseURL,
			SigningKeyFile: cfg.SigningKeyFile,
			CheckpointDir:  cfg.CheckpointDir,
			WebhookSecrets: func() []string {
				cfg.loadDevSecrets()
				return cfg.WebhookSecrets
			},
		}, nil
	})
}

// auditRuntime is the audit part of a running App: the background sealer
// of the global hash chain.
type auditRuntime struct {
	stop context.CancelFunc
	done chan struct{}
}

// startAudit builds the auditor for the HTTP handler and starts the chain
// sealer: every server process runs one, and a lock in the database lets
// one of them at a time extend the chain. Appends never wait for it. With
// LEDGER_SIGNING_KEY and LEDGER_CHECKPOINT_DIR the sealer also signs
// checkpoints.
func (a *App) startAudit(db *sql.DB) (*audit.Auditor, error) {
	scfg := audit.SealerConfig{DB: db, Logger: a.logger}
	if (a.cfg.SigningKeyFile == "") != (a.cfg.CheckpointDir == "") {
		return nil, errors.New("LEDGER_SIGNING_KEY and LEDGER_CHECKPOINT_DIR go together: signed checkpoints are written to that directory")
	}
	if a.cfg.SigningKeyFile != "" {
		signer, err := auditcmd.LoadSigner(a.cfg.SigningKeyFile)
		if err != nil {
			return nil, err
		}
		cp, err := checkpoints.New(checkpoints.Config{DB: db, Signer: signer, Dir: a.cfg.CheckpointDir, Logger: a.logger})
		if err != nil {
			return nil, err
		}
		scfg.Checkpoints, scfg.CheckpointEvery, scfg.CheckpointInterval = cp, a.cfg.CheckpointEvery, a.cfg.CheckpointInterval
		a.logger.Info("signing checkpoints", "origin", signer.Origin(), "dir", a.cfg.CheckpointDir,
			"every", a.cfg.CheckpointEvery, "interval", a.cfg.CheckpointInterval)
	}
	auditor, err := audit.NewAuditor(audit.AuditorConfig{DB: db, Checkpoints: scfg.Checkpoints})
	if err != nil {
		return nil, err
	}
	sealer, err := audit.NewSealer(scfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.audit = auditRuntime{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.audit.done)
		_ = sealer.Run(ctx)
	}()
	return auditor, nil
}

// stopAudit stops the sealer and waits for it (a batch in flight is rolled
// back or committed whole).
func (a *App) stopAudit() {
	if a.audit.stop != nil {
		a.audit.stop()
		<-a.audit.done
		a.audit.stop = nil
	}
}
