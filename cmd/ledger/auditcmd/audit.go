// Package auditcmd is `ledger audit`: the auditor's commands (history,
// export, chain head, verification) and the evidence commands (keygen,
// checkpoints, bundles). They read the database directly; the ledger command
// wires them with NewCommand and an Env.
package auditcmd

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/booking-ledger/ledger/adapters/postgres"
	"github.com/booking-ledger/ledger/adapters/postgres/audit"
	"github.com/booking-ledger/ledger/adapters/stripe"
	"github.com/booking-ledger/ledger/domain/eventlog"
)

// NewCommand is `ledger audit`. load is called when a command starts, so
// that a bad configuration fails that command only, as every other command
// does.
func NewCommand(load func() (Env, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read the ledger as an auditor: history, export, chain head, verification",
		Long: `Audit commands read the database directly (DATABASE_URL). Every one of
them is recorded in the access log (audit_access_log) as cli:<user>@<host>.`,
	}
	cmd.AddCommand(newAuditHistoryCmd(load), newAuditExportCmd(load), newAuditHeadCmd(load), newAuditVerifyCmd(load))
	cmd.AddCommand(newAuditKeygenCmd(), newAuditCheckpointCmd(load), newAuditBundleCmd(load), newAuditCheckBundleCmd())
	return cmd
}

// Env is what the audit commands take from the ledger command's
// configuration. The commands do not import package main: the command
// passes it in.
type Env struct {
	// DatabaseURL is DATABASE_URL, which the commands read directly.
	DatabaseURL string
	// SigningKeyFile and CheckpointDir are LEDGER_SIGNING_KEY and
	// LEDGER_CHECKPOINT_DIR.
	SigningKeyFile, CheckpointDir string
	// WebhookSecrets returns the webhook secrets of STRIPE_WEBHOOK_SECRET,
	// or the one a --dev server saved when it is unset.
	WebhookSecrets func() []string
}

// auditSession is what every audit command needs: the configuration, a
// pool, and the access log.
type auditSession struct {
	cfg     Env
	db      *sql.DB
	auditor *audit.Auditor
}

func openAudit(ctx context.Context, load func() (Env, error)) (*auditSession, error) {
	cfg, err := load()
	if err != nil {
		return nil, err
	}
	db, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MaxOpenConns: 4})
	if err != nil {
		return nil, err
	}
	auditor, err := audit.NewAuditor(audit.AuditorConfig{DB: db})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &auditSession{cfg: cfg, db: db, auditor: auditor}, nil
}

func (s *auditSession) Close() error { return s.db.Close() }

// record writes the access log row of a command before it reads.
func (s *auditSession) record(ctx context.Context, action, target string) error {
	actor := "cli:unknown"
	if u, err := user.Current(); err == nil {
		host, _ := os.Hostname()
		actor = "cli:" + u.Username + "@" + host
	}
	if err := s.auditor.RecordAccess(ctx, audit.Access{Actor: actor, Channel: "cli", Action: action, Target: target,
		UserAgent: "ledger " + strings.Join(os.Args[1:], " ")}); err != nil {
		return fmt.Errorf("the access log refused the read (run `ledger migrate`?): %w", err)
	}
	return nil
}

// parseMoment reads an RFC 3339 flag value; "" is the zero time.
func parseMoment(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s %q: want an RFC 3339 time such as 2027-01-10T12:00:00Z", flag, v)
	}
	return t, nil
}

func newAuditHistoryCmd(load func() (Env, error)) *cobra.Command {
	var bookingID int64
	var format, asOf string
	cmd := &cobra.Command{
		Use:   "history --booking-id N [--format table|json|csv] [--as-of T]",
		Short: "Every event of a booking beside the raw Stripe events about it; with --as-of, its state at that moment",
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" && format != "csv" {
				return fmt.Errorf("--format %q: want table, json or csv", format)
			}
			at, err := parseMoment("as-of", asOf)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := openAudit(ctx, load)
			if err != nil {
				return err
			}
			defer s.Close()
			target := strconv.FormatInt(bookingID, 10)
			if !at.IsZero() {
				target += "@" + at.UTC().Format(time.RFC3339Nano)
			}
			if err := s.record(ctx, "history", target); err != nil {
				return err
			}
			h, err := s.auditor.History(ctx, bookingID, at)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(h)
			case "csv":
				return historyCSV(out, h)
			}
			return historyTable(out, h)
		},
	}
	cmd.Flags().Int64Var(&bookingID, "booking-id", 0, "the booking (required)")
	cmd.Flags().StringVar(&format, "format", "table", "table, json or csv")
	cmd.Flags().StringVar(&asOf, "as-of", "", "the booking folded from its events recorded up to this RFC 3339 moment")
	cmd.MarkFlagRequired("booking-id")
	return cmd
}

func historyTable(w io.Writer, h audit.BookingHistory) error {
	b := h.Booking
	fmt.Fprintf(w, "Booking %d", h.BookingID)
	if h.AsOf != nil {
		fmt.Fprintf(w, " as of %s", h.AsOf.Format(time.RFC3339Nano))
	}
	fmt.Fprintf(w, ": %s / %s, %s %s–%s, %d %s, %s\n", b.Status, b.PaymentStatus, b.ResourceID, b.CheckIn, b.CheckOut, b.Amount, b.Currency, b.CustomerEmail)
	if h.Integrity.Intact {
		fmt.Fprintf(w, "Stream intact; %d event(s) sealed in the global chain, %d not yet\n", h.Integrity.Sealed, h.Integrity.Unsealed)
	} else {
		fmt.Fprintf(w, "STREAM BROKEN: %s\n", h.Integrity.Problem)
	}
	fmt.Fprintln(w, "\nEvents")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POSITION\tVERSION\tTYPE\tOCCURRED\tRECORDED\tCAUSED BY\tCHAIN SEQ\tDATA")
	for _, e := range h.Events {
		seq := "-"
		if e.ChainSeq != nil {
			seq = strconv.FormatInt(*e.ChainSeq, 10)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Position, e.StreamVersion, e.Type,
			e.OccurredAt.Format(time.RFC3339Nano), e.RecordedAt.Format(time.RFC3339Nano), e.CausationID, seq, e.Data)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nRaw Stripe events (payloads: --format json)")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECEIVED\tSTRIPE EVENT\tTYPE\tOUTCOME\tMATCHED BY\tCAUSED\tSIGNATURE\tSHA-256")
	for _, r := range h.StripeEvents {
		caused := make([]string, len(r.CausedPositions))
		for i, p := range r.CausedPositions {
			caused[i] = strconv.FormatInt(p, 10)
		}
		sig := r.SignatureHeader
		if len(sig) > 24 {
			sig = sig[:24] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ReceivedAt.Format(time.RFC3339Nano), r.ID, r.Type, r.Outcome,
			r.MatchedBy, strings.Join(caused, ","), sig, r.PayloadSHA256[:16])
	}
	return tw.Flush()
}

// historyCSV writes one row per domain event and per raw Stripe event,
// events first, each in order.
func historyCSV(w io.Writer, h audit.BookingHistory) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"kind", "position", "stream_version", "type", "occurred_at", "recorded_at", "causation_id",
		"chain_seq", "stripe_event_id", "outcome", "matched_by", "signature_header", "payload_sha256", "data"})
	for _, e := range h.Events {
		seq := ""
		if e.ChainSeq != nil {
			seq = strconv.FormatInt(*e.ChainSeq, 10)
		}
		cw.Write([]string{"event", strconv.FormatInt(e.Position, 10), strconv.Itoa(e.StreamVersion), e.Type,
			e.OccurredAt.Format(time.RFC3339Nano), e.RecordedAt.Format(time.RFC3339Nano), e.CausationID, seq,
			"", "", "", "", "", string(e.Data)})
	}
	for _, r := range h.StripeEvents {
		payload := r.Payload
		if payload == "" {
			payload = r.PayloadBase64
		}
		cw.Write([]string{"stripe", "", "", r.Type, "", r.ReceivedAt.Format(time.RFC3339Nano), "", "",
			r.ID, r.Outcome, r.MatchedBy, r.SignatureHeader, r.PayloadSHA256, payload})
	}
	cw.Flush()
	return cw.Error()
}

func newAuditExportCmd(load func() (Env, error)) *cobra.Command {
	var from, to, format, output string
	cmd := &cobra.Command{
		Use:   "export [--from T] [--to T] [--format jsonl|csv] [--output FILE]",
		Short: "Stream the whole log in position order, with constant memory",
		Long: `Writes every event recorded in [--from, --to) in position order, as JSON
lines (the lines GET /audit/events serves, byte for byte) or CSV with a header.
Only positions up to the settled position are read: appending transactions
that may still commit below it are waited for.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseMoment("from", from)
			if err != nil {
				return err
			}
			t, err := parseMoment("to", to)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := openAudit(ctx, load)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.record(ctx, "export", fmt.Sprintf("from=%s&to=%s&format=%s", from, to, format)); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var file *os.File
			if output != "" && output != "-" {
				if file, err = os.Create(output); err != nil {
					return err
				}
				defer file.Close()
				out = file
			}
			q := audit.ExportQuery{From: f, To: t, Format: format}
			bar := newBar(cmd, "exporting")
			if bar != nil {
				q.Progress = func(last, settled int64) {
					bar.ChangeMax64(settled)
					bar.Set64(last)
				}
			}
			res, err := s.auditor.Export(ctx, out, q)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			if file != nil {
				if err := file.Close(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "exported %d events (up to position %d) to %s\n", res.Events, res.Settled, output)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "first recorded_at included (RFC 3339)")
	cmd.Flags().StringVar(&to, "to", "", "first recorded_at excluded (RFC 3339)")
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl or csv")
	cmd.Flags().StringVar(&output, "output", "", "write to this file instead of standard output")
	return cmd
}

// newBar is a progress bar on standard error when it is a terminal, else
// nil.
func newBar(cmd *cobra.Command, what string) *progressbar.ProgressBar {
	if cmd.ErrOrStderr() != os.Stderr || !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	return progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("events"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func newAuditHeadCmd(load func() (Env, error)) *cobra.Command {
	var format string
	var noSeal bool
	var sealTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "head [--format text|json] [--no-seal]",
		Short: "Print the global chain's head as POS:HASH, to keep outside the database",
		Long: `Seals what has committed (unless --no-seal), then prints the head of the
global hash chain as POS:HASH. Keep it somewhere the database's administrators
cannot write; ` + "`ledger audit verify --anchor POS:HASH`" + ` then detects the
deletion of the newest events, which the chain alone cannot.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			ctx := cmd.Context()
			s, err := openAudit(ctx, load)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.record(ctx, "head", "chain"); err != nil {
				return err
			}
			if !noSeal {
				if err := s.seal(cmd, sealTimeout); err != nil {
					return err
				}
			}
			head, err := audit.Head(ctx, s.db)
			if err != nil {
				return err
			}
			if format == "json" {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(struct {
					eventlog.ChainHead
					Anchor string `json:"anchor"`
				}{head, head.Anchor()})
			}
			fmt.Fprintln(cmd.OutOrStdout(), head.Anchor())
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "text (POS:HASH) or json")
	cmd.Flags().BoolVar(&noSeal, "no-seal", false, "print the head as it is, without sealing first")
	cmd.Flags().DurationVar(&sealTimeout, "seal-timeout", 30*time.Second, "how long to wait for older transactions before printing what is sealed")
	return cmd
}

// seal seals everything committed, waiting at most timeout for older
// transactions; past it, it warns and goes on with what is sealed.
func (s *auditSession) seal(cmd *cobra.Command, timeout time.Duration) error {
	sealer, err := audit.NewSealer(audit.SealerConfig{DB: s.db, Interval: 50 * time.Millisecond, BatchSize: 10000})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	if _, err := sealer.SealCommitted(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) && cmd.Context().Err() == nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: a transaction older than the newest events has been running for %s; they stay unsealed for now\n", timeout)
			return nil
		}
		return err
	}
	return nil
}

func newAuditVerifyCmd(load func() (Env, error)) *cobra.Command {
	var anchor, format, checkpoints, publicKey string
	var noSeal bool
	var sealTimeout, timeTolerance time.Duration
	var ranges int
	cmd := &cobra.Command{
		Use:   "verify [--checkpoints DIR --public-key FILE] [--anchor POS:HASH] [--no-seal] [--format text|json]",
		Short: "Recompute every stream chain and the global chain, check the inbox; exit 1 naming the first broken position",
		Long: `Seals what has committed (unless --no-seal), then checks in one snapshot:
every stream's hash chain and every event's content hash; the global chain,
link by link, gapless, covering every committed event; with --anchor, that the
kept head (from ` + "`ledger audit head`" + `) is still in the chain, unchanged; the
raw bodies of the Stripe inbox and deliveries against their SHA-256 and, when
STRIPE_WEBHOOK_SECRET is set, their stored signatures; every inbox, delivery and
access-log row sealed since hash version 2 against its link. With --checkpoints
DIR --public-key FILE, that the log is a consistent extension of every signed
checkpoint in DIR: this is what detects a log rewritten and rehashed by whoever
owns the database, a cut tail or a fork. Events whose recorded_at is later than
their seal, or out of chain order, beyond --time-tolerance, are warned of. It
exits 0 when all holds, else 1 with the first broken place and what is wrong.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			vcfg := audit.VerifyConfig{Ranges: ranges, TimeTolerance: timeTolerance}
			files, key, err := checkpointConfig(checkpoints, publicKey)
			if err != nil {
				return err
			}
			vcfg.Checkpoints, vcfg.CheckpointKey = files, key
			if anchor != "" {
				a, err := eventlog.ParseAnchor(anchor)
				if err != nil {
					return err
				}
				vcfg.Anchor = &a
			}
			ctx := cmd.Context()
			s, err := openAudit(ctx, load)
			if err != nil {
				return err
			}
			defer s.Close()
			if secrets := s.cfg.WebhookSecrets(); len(secrets) > 0 {
				v, err := stripe.NewVerifier(stripe.VerifierConfig{Secrets: secrets})
				if err != nil {
					return err
				}
				vcfg.Signatures = v
			}
			if err := s.record(ctx, "verify", "anchor="+anchor+"&checkpoints="+checkpoints); err != nil {
				return err
			}
			if !noSeal {
				if err := s.seal(cmd, sealTimeout); err != nil {
					return err
				}
			}
			bar := newBar(cmd, "verifying")
			if bar != nil {
				vcfg.Progress = func(done, total int64) {
					bar.ChangeMax64(total)
					bar.Set64(done)
				}
			}
			report, err := audit.Verify(ctx, s.cfg.DatabaseURL, vcfg)
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(report); err != nil {
					return err
				}
			} else {
				printReport(out, report, vcfg.Signatures != nil)
				for i, w := range report.TimeWarnings {
					if i == 20 {
						fmt.Fprintf(cmd.ErrOrStderr(), "... %d more time warnings\n", len(report.TimeWarnings)-i)
						break
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "TIME %s\n", w)
				}
			}
			if key == nil {
				fmt.Fprintln(cmd.ErrOrStderr(), internalOnlyWarning)
			}
			if err := report.Err(); err != nil {
				if format == "text" {
					for i, p := range report.Problems {
						if i == 20 {
							fmt.Fprintf(cmd.ErrOrStderr(), "... %d more\n", len(report.Problems)-i)
							break
						}
						fmt.Fprintf(cmd.ErrOrStderr(), "BROKEN %s [%s]\n", p, p.Check)
					}
				}
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&anchor, "anchor", "", "a chain head kept outside the database (POS:HASH, from `ledger audit head`)")
	cmd.Flags().StringVar(&format, "format", "text", "text or json (the report)")
	cmd.Flags().BoolVar(&noSeal, "no-seal", false, "verify without sealing first (read only)")
	cmd.Flags().DurationVar(&sealTimeout, "seal-timeout", 30*time.Second, "how long to wait for older transactions while sealing")
	cmd.Flags().IntVar(&ranges, "ranges", 2, "read the log in this many position ranges in parallel, one connection each")
	cmd.Flags().StringVar(&checkpoints, "checkpoints", "", "directory of signed checkpoints (checkpoint-* files) the log must extend")
	cmd.Flags().StringVar(&publicKey, "public-key", "", "the checkpoints' verifier key file (signing.pub of `ledger audit keygen`)")
	cmd.Flags().DurationVar(&timeTolerance, "time-tolerance", 5*time.Minute, "how far recorded_at may be after its seal, or before an earlier-sealed event's, before a warning")
	return cmd
}

func printReport(w io.Writer, r audit.VerifyReport, signatures bool) {
	fmt.Fprintf(w, "chain head: seq %d, position %d, hash %s\n", r.Head.Seq, r.Head.Position, r.Head.Hash)
	fmt.Fprintf(w, "events:     %d in %d streams, %d sealed, %d not sealed yet\n", r.Events, r.Streams, r.Sealed, r.Unsealed)
	sig := "signatures not re-checked (no STRIPE_WEBHOOK_SECRET)"
	if signatures {
		sig = fmt.Sprintf("%d signatures re-checked", r.SignaturesChecked)
	}
	fmt.Fprintf(w, "inbox:      %d raw events, %d other deliveries, %s\n", r.InboxRows, r.DeliveryRows, sig)
	fmt.Fprintf(w, "rows:       %d access-log rows; %d inbox, delivery and access-log rows sealed, %d not sealed yet\n", r.AccessRows, r.RowsSealed, r.RowsUnsealed)
	if r.AnchorChecked {
		fmt.Fprintln(w, "anchor:     checked")
	}
	if r.CheckpointsChecked > 0 {
		fmt.Fprintf(w, "checkpoints: %d signed checkpoint(s) checked\n", r.CheckpointsChecked)
	}
	if n := len(r.TimeWarnings); n > 0 {
		fmt.Fprintf(w, "times:      %d event(s) with recorded_at out of line with the chain (warnings)\n", n)
	}
	fmt.Fprintf(w, "verified in %s (%.0f events/s)\n", r.Duration.Round(time.Millisecond), r.EventsPerSecond())
	if r.OK() {
		fmt.Fprintln(w, "OK")
	}
}
