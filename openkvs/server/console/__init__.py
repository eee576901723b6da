"""The web console: a browser page over the AWS operations, logged in with an access key."""
