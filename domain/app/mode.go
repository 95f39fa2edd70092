package app

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/booking-ledger/ledger/domain"
)

// Outcomes of Ingest for events the ledger keeps but must not decide on:
// they are not its own (see Mode).
const (
	// OutcomeWrongMode: the event's livemode differs from the ledger's
	// mode, e.g. a test-mode event of a connected account sent to a live
	// endpoint, signed with the endpoint's secret. Kept as a delivery row.
	OutcomeWrongMode Outcome = "wrong_mode"
	// OutcomeForeignAccount: the event happened on a Connect account that
	// is not among Mode.Accounts. Kept as a delivery row.
	OutcomeForeignAccount Outcome = "foreign_account"
)

// Mode says which Stripe events are the ledger's own: those of its mode
// (live or test) and, when Accounts is set, of the listed Connect accounts.
// The zero Mode is test mode with every account: the events of Stripe's
// test fixtures and of stripe-mock.
//
// Events without an account are the platform's own (the account whose keys
// the ledger holds) and pass whatever Accounts says: the list filters the
// connected accounts only, because an event of the platform cannot come
// from anyone else, and a ledger that listed its connected accounts would
// otherwise stop deciding on its own payments.
type Mode struct {
	// Live is true in live mode: only events with livemode true are
	// decided. False takes test-mode events only.
	Live bool
	// Accounts, when not empty, are the Connect accounts ("acct_...")
	// whose events are decided; events of other connected accounts are
	// kept as OutcomeForeignAccount.
	Accounts []string
}

// String is "live" or "test", as LEDGER_STRIPE_MODE spells them.
func (m Mode) String() string {
	if m.Live {
		return "live"
	}
	return "test"
}

// Validate refuses an account that is not a Stripe account id ("acct_"
// followed by letters, digits and underscores), as a *domain.FieldError
// wrapping domain.ErrInvalid.
func (m Mode) Validate() error {
	var errs []error
	for _, a := range m.Accounts {
		if err := domain.CheckStripeID("accounts", "acct_", a); err != nil {
			errs = append(errs, fmt.Errorf("account %q: %w", a, err))
		}
	}
	return errors.Join(errs...)
}

// Ignores reports whether d is not the ledger's to decide on, and the
// outcome it is kept under: OutcomeWrongMode when its livemode differs
// from m, else OutcomeForeignAccount when it names a connected account
// that Accounts (when set) does not list.
func (m Mode) Ignores(d Delivery) (Outcome, bool) {
	switch {
	case d.Livemode != m.Live:
		return OutcomeWrongMode, true
	case d.Account != "" && len(m.Accounts) > 0 && !slices.Contains(m.Accounts, d.Account):
		return OutcomeForeignAccount, true
	}
	return "", false
}

// gate keeps a delivery that the configured Mode ignores as a delivery row
// (Bookings.RecordDelivery) and logs a warning; nothing is decided, no
// booking is looked up. It is the one place where mode and account are
// checked, for every channel (webhook, redirect check, reconciliation),
// since all of them come through Ingest. ignored is false, and nothing is
// written, for a delivery the ledger decides on.
func (s *Service) gate(ctx context.Context, d Delivery) (res IngestResult, ignored bool, err error) {
	outcome, ignored := s.cfg.Mode.Ignores(d)
	if !ignored {
		return IngestResult{}, false, nil
	}
	if err := s.cfg.Bookings.RecordDelivery(ctx, d, outcome); err != nil {
		return IngestResult{}, true, err
	}
	msg := "Stripe event of the other mode ignored"
	if outcome == OutcomeForeignAccount {
		msg = "Stripe event of a foreign account ignored"
	}
	s.log.WarnContext(ctx, msg, "event_id", d.EventID, "event_type", d.Type, "livemode", d.Livemode,
		"mode", s.cfg.Mode.String(), "account", d.Account, "source", d.Source, "outcome", string(outcome))
	return IngestResult{Outcome: outcome}, true, nil
}
