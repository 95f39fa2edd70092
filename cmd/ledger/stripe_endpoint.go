package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/booking-ledger/ledger/adapters/stripe"
)

// newStripeCmd is `ledger stripe endpoint create|check|list`: the Stripe
// webhook endpoint set up and checked from the command line, with exactly
// the types the ledger handles.
func newStripeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "stripe", Short: "Stripe account set-up"}
	endpoint := &cobra.Command{Use: "endpoint", Short: "The webhook endpoint in Stripe: create, check, list"}
	client := func() (*stripe.Client, error) {
		cfg, err := loadConfig()
		if err != nil {
			return nil, err
		}
		c, err := cfg.stripeClient(cfg.newLogger())
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, errors.New("STRIPE_SECRET_KEY is not set: the endpoint is registered with the account's key")
		}
		return c, nil
	}
	var createURL string
	create := &cobra.Command{
		Use:   "create --url https://HOST/webhooks/stripe/",
		Short: "Register the webhook endpoint with exactly the handled types; print its signing secret once",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			e, err := c.CreateWebhookEndpoint(cmd.Context(), createURL)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "created %s for %s (%d types, API version %s)\n", e.ID, e.URL, len(e.EnabledEvents), e.APIVersion)
			fmt.Fprintf(w, "signing secret (shown once): %s\n", e.Secret)
			fmt.Fprintln(w, "set it: STRIPE_WEBHOOK_SECRET="+e.Secret+
				" — when rotating, keep the old one after it (STRIPE_WEBHOOK_SECRET=new,old) until Stripe signs with the new one only")
			return nil
		},
	}
	create.Flags().StringVar(&createURL, "url", "", "the ledger's webhook URL (required)")
	create.MarkFlagRequired("url")

	var checkURL string
	check := &cobra.Command{
		Use:   "check [--url https://HOST/webhooks/stripe/]",
		Short: "Compare the registered endpoints with what the ledger handles; exit 1 on a problem",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			list, err := c.ListWebhookEndpoints(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if checkURL != "" {
				var mine []stripe.WebhookEndpoint
				for _, e := range list {
					if e.URL == checkURL {
						mine = append(mine, e)
					}
				}
				if len(mine) == 0 {
					return fmt.Errorf("no endpoint is registered for %s: run `ledger stripe endpoint create --url %s`", checkURL, checkURL)
				}
				list = mine
			}
			if len(list) == 0 {
				return errors.New("no webhook endpoint is registered: run `ledger stripe endpoint create --url ...`")
			}
			bad := 0
			for _, e := range list {
				problems := stripe.CheckWebhookEndpoint(e, checkURL)
				if len(problems) == 0 {
					fmt.Fprintf(w, "%s %s: OK\n", e.ID, e.URL)
					continue
				}
				bad++
				fmt.Fprintf(w, "%s %s:\n  %s\n", e.ID, e.URL, strings.Join(problems, "\n  "))
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d endpoint(s) need attention", bad, len(list))
			}
			return nil
		},
	}
	check.Flags().StringVar(&checkURL, "url", "", "check only the endpoint of this URL, and that it exists")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the account's webhook endpoints",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			list, err := c.ListWebhookEndpoints(cmd.Context())
			if err != nil {
				return err
			}
			for _, e := range list {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\t%s\t%d types\n", e.ID, e.URL, e.Status, e.APIVersion, len(e.EnabledEvents))
			}
			return nil
		},
	}
	endpoint.AddCommand(create, check, list)
	cmd.AddCommand(endpoint)
	return cmd
}
