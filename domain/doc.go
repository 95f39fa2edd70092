// Package domain holds the heart of the booking ledger: bookings, money,
// date ranges, the domain events that make up the append-only log, and the
// pure decision functions that turn a Stripe fact plus the current state of a
// booking into the events to append.
//
// The package imports the standard library only. It knows nothing about SQL,
// HTTP or Stripe's SDK: adapters extract the facts they receive into the plain
// types declared here (Payment, Stay, NewBookingParams) and store the events
// these functions return.
//
// Two paths build a Booking and they are deliberately different:
//
//   - NewBooking validates every business rule on new input and returns the
//     BookingRequested event that records the request.
//   - Rehydrate / Apply replay recorded events. Apply never re-evaluates a
//     business rule, so a booking recorded under older rules still replays to
//     the same state after the rules change.
//
// Decisions (DecidePaymentSucceeded and friends) read a Booking and return
// events; they never mutate it. The caller appends the events and applies
// them.
package domain
