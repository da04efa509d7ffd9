"""Training scripts for the replay differential tests: old versions and hand-patched ones."""

from __future__ import annotations

OLD = """
import torch
from torch import nn
import florsql as flor

lr = flor.arg("lr", 0.1)
epochs = flor.arg("epochs", 6)
torch.manual_seed(flor.arg("seed", 0))
x_all = torch.randn(96, 8)
y_all = (x_all[:, :3].sum(dim=1) > 0).long()
net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
loss_fn = nn.CrossEntropyLoss()

with flor.checkpointing(model=net, optimizer=opt, scheduler=sched):
    for epoch in flor.loop("epoch", range(epochs)):
        order = torch.randperm(len(x_all))
        for idx in flor.loop("step", order.split(16)):
            loss = loss_fn(net(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            flor.log("loss", loss)
        sched.step()
        with torch.no_grad():
            flor.log("acc", (net(x_all).argmax(1) == y_all).float().mean())
flor.log("final", float(net[0].weight.sum()))
"""

#: The old version with the new statements inserted by hand: the oracle's code.
PATCHED = (
    OLD.replace(
        """        order = torch.randperm(len(x_all))
""",
        """        flor.log("lr_now", opt.param_groups[0]["lr"])
        order = torch.randperm(len(x_all))
""",
    )
    .replace(
        """            flor.log("loss", loss)
""",
        """            flor.log("loss", loss)
            flor.log("grad_norm", float(sum(p.grad.norm() for p in net.parameters())))
""",
    )
    .replace(
        """        sched.step()
""",
        """        sched.step()
        flor.log("wnorm", float(sum(p.detach().norm() for p in net.parameters())))
""",
    )
    .replace(
        """flor.log("final", float(net[0].weight.sum()))""",
        """flor.log("final", float(net[0].weight.sum()))
flor.log("final_w", float(net[2].weight.detach().abs().sum()))""",
    )
)
assert PATCHED.count("flor.log") == OLD.count("flor.log") + 4
