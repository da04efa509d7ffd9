"""A small torch training script recorded with florsql (used by `make demo` and the tests).

Trains a two-layer MLP on a synthetic classification task, with a momentum optimizer, an LR
scheduler stepped after the inner loop, and a per-epoch data order drawn from torch's RNG.
"""

import torch
from torch import nn

import florsql as flor

lr = flor.arg("lr", 0.05)
epochs = flor.arg("epochs", 4)
batch_size = flor.arg("batch_size", 32)
seed = flor.arg("seed", 0)

torch.manual_seed(seed)
features = torch.randn(512, 16)
labels = (features[:, :4].sum(dim=1) > 0).long()
train_x, train_y = features[:384], labels[:384]
val_x, val_y = features[384:], labels[384:]

net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
loss_fn = nn.CrossEntropyLoss()


def evaluate() -> float:
    with torch.no_grad():
        return (net(val_x).argmax(dim=1) == val_y).float().mean().item()


with flor.checkpointing(model=net, optimizer=optimizer, scheduler=scheduler):
    for epoch in flor.loop("epoch", range(epochs)):
        order = torch.randperm(len(train_x))
        batches = order.split(batch_size)
        for idx in flor.loop("step", batches):
            loss = loss_fn(net(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            flor.log("loss", loss)
        scheduler.step()
        flor.log("val_acc", evaluate())

flor.log("final_acc", evaluate())
flor.commit()
