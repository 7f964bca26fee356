"""The sandbox: a local AWS (moto plus the Auto Scaling rules moto lacks) to rehearse and test
rollouts without a cloud. Imported only by the CLI's sandbox commands and by tests."""
