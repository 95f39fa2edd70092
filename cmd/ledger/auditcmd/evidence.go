package auditcmd

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-ledger/ledger/adapters/postgres/audit/checkpoints"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain/evidence"
)

// LoadSigner reads the checkpoint signer key file (LEDGER_SIGNING_KEY);
// nil when none is configured.
func LoadSigner(path string) (*evidence.Signer, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("LEDGER_SIGNING_KEY: %w", err)
	}
	return evidence.NewSigner(string(b))
}

// LoadVerifier reads a checkpoint verifier key file (signing.pub).
func LoadVerifier(path string) (*evidence.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--public-key: %w", err)
	}
	return evidence.NewVerifier(string(b))
}

// newCheckpointer is the checkpointer of cfg's key and directory; nil
// without a key.
func newCheckpointer(cfg Env, s *auditSession) (*checkpoints.Checkpointer, error) {
	signer, err := LoadSigner(cfg.SigningKeyFile)
	if err != nil || signer == nil {
		return nil, err
	}
	return checkpoints.New(checkpoints.Config{DB: s.db, Signer: signer, Dir: cfg.CheckpointDir})
}

func newAuditKeygenCmd() *cobra.Command {
	var out, name string
	cmd := &cobra.Command{
		Use:   "keygen --out DIR [--name NAME]",
		Short: "Write an Ed25519 key pair for signing checkpoints: DIR/signing.key (secret) and DIR/signing.pub",
		Long: `Writes a new key pair in the signed-note form: DIR/signing.key, the signer
key, readable by its owner only, for LEDGER_SIGNING_KEY; and DIR/signing.pub,
the verifier key, for auditors (` + "`ledger audit verify --public-key`" + `,
` + "`ledger audit check-bundle --public-key`" + `). NAME, the log's name, is the origin
of every checkpoint the key signs. Existing files are never overwritten.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out DIR is required")
			}
			skey, vkey, err := evidence.GenerateKey(name)
			if err != nil {
				return fmt.Errorf("--name %q: %w", name, err)
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			keyPath, pubPath := filepath.Join(out, "signing.key"), filepath.Join(out, "signing.pub")
			for _, f := range []struct {
				path, data string
				mode       os.FileMode
			}{{keyPath, skey, 0o600}, {pubPath, vkey, 0o644}} {
				if err := writeNew(f.path, []byte(f.data+"\n"), f.mode); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signing key (keep secret; LEDGER_SIGNING_KEY): %s\npublic key (for auditors; --public-key): %s\n", keyPath, pubPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory for signing.key and signing.pub")
	cmd.Flags().StringVar(&name, "name", "booking-ledger", "the log's name: the origin line of its checkpoints (no spaces or '+')")
	return cmd
}

// writeNew creates path with data, failing if it exists.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("%s: %w (keys are never overwritten)", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newAuditCheckpointCmd(load func() (Env, error)) *cobra.Command {
	var key, dir string
	var sealTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "checkpoint [--key FILE] [--dir DIR]",
		Short: "Seal what has committed and sign a checkpoint of the chain now",
		Long: `Seals what has committed, extends the Merkle tree over the chain and signs a
checkpoint of it with the signer key (--key, default LEDGER_SIGNING_KEY), stored
in the database and written once to --dir (default LEDGER_CHECKPOINT_DIR) as
checkpoint-<size>. Keep that directory where the database's administrators
cannot write.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := openAudit(ctx, load)
			if err != nil {
				return err
			}
			defer s.Close()
			if key != "" {
				s.cfg.SigningKeyFile = key
			}
			if dir != "" {
				s.cfg.CheckpointDir = dir
			}
			cp, err := newCheckpointer(s.cfg, s)
			if err != nil {
				return err
			}
			if cp == nil {
				return errors.New("no signing key: set LEDGER_SIGNING_KEY or --key (`ledger audit keygen --out DIR` makes one)")
			}
			if err := s.record(ctx, "checkpoint", "chain"); err != nil {
				return err
			}
			if err := s.seal(cmd, sealTimeout); err != nil {
				return err
			}
			res, err := cp.Checkpoint(ctx)
			if err != nil {
				return err
			}
			state := "signed"
			if !res.New {
				state = "unchanged (nothing sealed since)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "checkpoint %s: %d links, root %s\n", state, res.Size, base64.StdEncoding.EncodeToString(res.Root))
			if res.File != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "written to %s\n", res.File)
			} else {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: no --dir nor LEDGER_CHECKPOINT_DIR: the checkpoint is only in the database, which cannot vouch for itself")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "signer key file (default LEDGER_SIGNING_KEY)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the checkpoint file (default LEDGER_CHECKPOINT_DIR)")
	cmd.Flags().DurationVar(&sealTimeout, "seal-timeout", 30*time.Second, "how long to wait for older transactions while sealing")
	return cmd
}

// checkpointConfig reads --checkpoints DIR and --public-key FILE for verify.
func checkpointConfig(dir, key string) ([]checkpoints.File, *evidence.Verifier, error) {
	if dir == "" && key == "" {
		return nil, nil, nil
	}
	if dir == "" || key == "" {
		return nil, nil, errors.New("--checkpoints DIR and --public-key FILE go together")
	}
	v, err := LoadVerifier(key)
	if err != nil {
		return nil, nil, err
	}
	files, err := checkpoints.ReadFiles(dir)
	if err != nil {
		return nil, nil, err
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("--checkpoints %s: no checkpoint-* file there", dir)
	}
	return files, v, nil
}

// internalOnlyWarning is what verify says without checkpoints.
const internalOnlyWarning = "warning: only the log's internal consistency was checked: whoever can write to the database can rewrite the log and recompute every hash. " +
	"Check it against signed checkpoints kept elsewhere: --checkpoints DIR --public-key FILE"

func newAuditBundleCmd(load func() (Env, error)) *cobra.Command {
	var bookingID int64
	var out string
	var sealTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "bundle --booking N [--out FILE]",
		Short: "Write a booking's evidence bundle: its events and raw Stripe events with proofs to a signed checkpoint",
		Long: `Writes one JSON file (default booking-N-evidence.json; - for standard output):
the booking's events, its raw Stripe events with their signature headers, each
with its chain link and the inclusion proof of that link in the newest signed
checkpoint, and that checkpoint. ` + "`ledger audit check-bundle`" + ` verifies it with no
access to the database. Seals first and, with LEDGER_SIGNING_KEY, signs a
checkpoint so that everything recorded so far is covered.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if bookingID <= 0 {
				return errors.New("--booking N is required")
			}
			ctx := cmd.Context()
			s, err := openAudit(ctx, load)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.record(ctx, "bundle", fmt.Sprint(bookingID)); err != nil {
				return err
			}
			if err := s.seal(cmd, sealTimeout); err != nil {
				return err
			}
			cp, err := newCheckpointer(s.cfg, s)
			if err != nil {
				return err
			}
			if cp != nil {
				if _, err := cp.Checkpoint(ctx); err != nil {
					return err
				}
			}
			data, info, err := s.auditor.Bundle(ctx, bookingID)
			if err != nil {
				return err
			}
			if out == "" {
				out = fmt.Sprintf("booking-%d-evidence.json", bookingID)
			}
			if out == "-" {
				_, err = cmd.OutOrStdout().Write(data)
				return err
			}
			if err := os.WriteFile(out, data, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d events, %d raw Stripe events, proofs to the checkpoint of %d links\n", out, info.Events, info.StripeRows, info.CheckpointSize)
			if info.Legacy > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %d raw Stripe event(s) recorded before hash version 2 are left out: no link seals them\n", info.Legacy)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&bookingID, "booking", 0, "the booking (required)")
	cmd.Flags().StringVar(&out, "out", "", "the file to write (default booking-N-evidence.json; - for standard output)")
	cmd.Flags().DurationVar(&sealTimeout, "seal-timeout", 30*time.Second, "how long to wait for older transactions while sealing")
	return cmd
}

func newAuditCheckBundleCmd() *cobra.Command {
	var publicKey string
	var secrets []string
	cmd := &cobra.Command{
		Use:   "check-bundle FILE --public-key K [--webhook-secret whsec_...]",
		Short: "Verify an evidence bundle offline: hashes, proofs, the checkpoint's signature and, given the secret, Stripe's signatures",
		Long: `Reads nothing but FILE, the key and the secret: no database, no network. Checks
that the file is exactly as ` + "`ledger audit bundle`" + ` wrote it, the checkpoint's
signature with the public key (signing.pub), the booking's event stream and
every hash, every link's inclusion in the checkpoint's tree and, with
--webhook-secret (repeatable), the Stripe signature of every raw event. Exits 1
naming the first thing that does not hold.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if publicKey == "" {
				return errors.New("--public-key FILE is required (signing.pub of `ledger audit keygen`)")
			}
			key, err := LoadVerifier(publicKey)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var sig evidence.SignatureChecker
			if len(secrets) > 0 {
				v, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: stripe.ParseSecrets(strings.Join(secrets, ","))})
				if err != nil {
					return err
				}
				sig = v
			}
			r, err := evidence.CheckBundle(data, key, sig)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "booking %d: %d events and %d raw Stripe events, each sealed in the chain and included in the checkpoint of %d links signed by %s\n",
				r.BookingID, r.Events, r.StripeRows, r.CheckpointSize, r.Origin)
			switch {
			case sig != nil:
				fmt.Fprintf(w, "Stripe signatures: %d verified, %d rows without one (fetched from Stripe's API)\n", r.SignaturesChecked, r.Unsigned)
			default:
				fmt.Fprintln(w, "Stripe signatures: not checked (no --webhook-secret)")
			}
			fmt.Fprintln(w, "OK")
			return nil
		},
	}
	cmd.Flags().StringVar(&publicKey, "public-key", "", "the checkpoints' verifier key file (signing.pub)")
	cmd.Flags().StringSliceVar(&secrets, "webhook-secret", nil, "a webhook signing secret (whsec_...) to re-check Stripe's signatures; repeatable")
	return cmd
}
