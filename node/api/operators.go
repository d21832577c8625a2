package api

import "context"

// Operators lists the cluster's operator keys.
func (c *Client) Operators(ctx context.Context) ([]OperatorView, error) {
	var out []OperatorView
	return out, c.call(ctx, "GET", "/v1/operators", nil, &out)
}

// AddOperator adds an operator key with a role (controllers and root only).
func (c *Client) AddOperator(ctx context.Context, req AddOperatorRequest) (*OperatorView, error) {
	var out OperatorView
	return &out, c.call(ctx, "POST", "/v1/operators", req, &out)
}

// RemoveOperator removes the operator whose ID (key fingerprint) or name is given, and closes its SSH
// connections to the agent (controllers and root only).
func (c *Client) RemoveOperator(ctx context.Context, idOrName string) (*RemoveOperatorResponse, error) {
	var out RemoveOperatorResponse
	return &out, c.call(ctx, "DELETE", "/v1/operators/"+esc(idOrName), nil, &out)
}

// ClusterCA returns the public key of the CA that signs the cluster's agents' certificates.
func (c *Client) ClusterCA(ctx context.Context) (*CAResponse, error) {
	var out CAResponse
	return &out, c.call(ctx, "GET", "/v1/cluster/ca", nil, &out)
}
