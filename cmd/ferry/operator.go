package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/ferryhq/ferry/node/api"
	"github.com/spf13/cobra"
)

func newOperatorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Manage the SSH keys that may use the cluster (add, ls, rm)",
		Long: `Operators connect with their SSH keys (ferry --addr ssh://HOST:PORT ...). A controller may run, stop,
migrate and change anything; a viewer may only read. Only controllers, or root on an agent's socket, may add
and remove operators. The first controller comes from ferry agent --controller-key, or from the socket.`,
		Args: needArgs(0, 0, "ferry operator add|ls|rm"),
	}
	cmd.AddCommand(newOperatorAddCmd(), newOperatorLsCmd(), newOperatorRmCmd())
	return cmd
}

func newOperatorAddCmd() *cobra.Command {
	var role, name string
	cmd := &cobra.Command{
		Use:   "add --role controller|viewer [--name NAME] KEYFILE.pub",
		Short: "Add an operator's public key (authorized_keys form) with a role; its comment, or --name, names it",
		Args:  needArgs(1, 1, "ferry operator add --role controller|viewer [--name NAME] KEYFILE.pub"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if role != "controller" && role != "viewer" {
				return usagef("--role %q: use controller or viewer", role)
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("read the operator's public key: %w", err)
			}
			if strings.Contains(string(data), "PRIVATE KEY") {
				return usagef("%s is a private key; give the public key (%s.pub), and keep the private key to yourself", args[0], args[0])
			}
			c, err := client()
			if err != nil {
				return err
			}
			op, err := c.AddOperator(cmd.Context(), api.AddOperatorRequest{PublicKey: string(data), Role: role, Name: name})
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, op)
			}
			fmt.Printf("added %s %s (%s)\n", op.Role, op.Name, op.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "controller (may change things) or viewer (may only read); required")
	cmd.Flags().StringVar(&name, "name", "", "the operator's name (default: the key's comment)")
	return cmd
}

func newOperatorLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the operators: key fingerprint (ID), name, role",
		Args:  needArgs(0, 0, "ferry operator ls"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			list, err := c.Operators(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, list)
			}
			rows := make([][]string, len(list))
			for i, o := range list {
				rows[i] = []string{o.ID, o.Name, o.Role}
			}
			return table(os.Stdout, []string{"ID", "NAME", "ROLE"}, rows)
		},
	}
}

func newOperatorRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID|NAME",
		Short: "Remove an operator's key and close its open connections",
		Args:  needArgs(1, 1, "ferry operator rm ID|NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			res, err := c.RemoveOperator(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, res)
			}
			fmt.Printf("removed %s %s (%s); closed %d open connection(s)\n", res.Operator.Role, res.Operator.Name, res.Operator.ID, res.Disconnected)
			return nil
		},
	}
}
