"""A small live plot of the training loss and validation IoU, painted with QPainter.

Drawn by hand rather than with matplotlib: matplotlib is not a dependency of the plugin, and two
polylines need no more than ``QPainter``. It repaints in well under a millisecond per step, takes
its colours from the widget palette (so it follows napari's light and dark themes) and scales
itself: the loss on a 0..max axis (left), the IoU on 0..1 (right).
"""

from __future__ import annotations

from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPaintEvent, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

LOSS_COLOUR = QColor(80, 160, 255)
IOU_COLOUR = QColor(255, 170, 40)


class LossPlot(QWidget):
    """Training loss (blue, left axis) and validation IoU (orange, right axis 0-1).

    The x axis is steps, or seconds with ``unit="s"``; :meth:`set_baseline` draws the
    starting model's IoU as a dashed line (what a fine-tune must beat).
    """

    def __init__(self, parent: QWidget | None = None, unit: str = "step"):
        super().__init__(parent)
        self.unit = unit
        self.loss: list[tuple[float, float]] = []
        self.iou: list[tuple[float, float]] = []
        self.baseline: float | None = None
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        per = "second" if unit == "s" else "step"
        self.setToolTip(
            f"Training loss (blue) and held-out IoU (orange) per {per}; dashed: the IoU of "
            "the model the fine-tune started from"
        )

    def sizeHint(self) -> QSize:
        """Preferred size in a dock."""
        return QSize(260, 130)

    def clear(self) -> None:
        """Forget all points."""
        self.loss.clear()
        self.iou.clear()
        self.baseline = None
        self.update()

    def set_baseline(self, iou: float | None) -> None:
        """Draw ``iou`` (the starting model's) as a dashed line; ``None`` removes it."""
        self.baseline = None if iou is None else float(iou)
        self.update()

    def add(self, x: float, loss: float | None, iou: float | None) -> None:
        """Add the figures at step (or second) ``x`` (``None`` where there is none)."""
        if loss is not None:
            self.loss.append((x, float(loss)))
        if iou is not None and (not self.iou or self.iou[-1] != (x, float(iou))):
            self.iou.append((x, float(iou)))
        self.update()

    def paintEvent(self, event: QPaintEvent | None) -> None:
        """Draw the axes box, both curves and the latest values."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().windowText().color()
        font = painter.font()
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        box = QRectF(self.rect()).adjusted(6, 18, -6, -6)
        grid = QColor(text)
        grid.setAlpha(70)
        painter.setPen(QPen(grid, 1))
        painter.drawRect(box)
        last = max([s for s, _ in self.loss + self.iou], default=1) or 1
        top_loss = max([v for _, v in self.loss], default=1.0) or 1.0
        painter.setPen(text)
        if not self.loss:
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, "loss and IoU appear here")
        self._curve(painter, self.loss, box, last, top_loss, LOSS_COLOUR)
        self._curve(painter, self.iou, box, last, 1.0, IOU_COLOUR)
        if self.baseline is not None:
            y = box.bottom() - box.height() * min(max(self.baseline, 0.0), 1.0)
            painter.setPen(QPen(IOU_COLOUR, 1, Qt.PenStyle.DashLine))
            painter.drawLine(QPointF(box.left(), y), QPointF(box.right(), y))
        painter.setPen(LOSS_COLOUR)
        loss_txt = f"loss {self.loss[-1][1]:.3f}" if self.loss else "loss"
        painter.drawText(QPointF(box.left(), 13), loss_txt)
        painter.setPen(IOU_COLOUR)
        iou_txt = f"val IoU {self.iou[-1][1]:.3f}" if self.iou else "val IoU"
        painter.drawText(QPointF(box.center().x(), 13), iou_txt)
        painter.setPen(text)
        painter.drawText(
            box.adjusted(0, 0, -3, -1),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom,
            (f"{last:.0f} s" if self.unit == "s" else f"step {last:.0f}") if self.loss else "",
        )
        painter.end()

    @staticmethod
    def _curve(
        painter: QPainter,
        points: list[tuple[float, float]],
        box: QRectF,
        last: float,
        top: float,
        colour: QColor,
    ) -> None:
        if not points:
            return
        poly = QPolygonF(
            [
                QPointF(
                    box.left() + box.width() * step / max(last, 1),
                    box.bottom() - box.height() * min(max(value / top, 0.0), 1.0),
                )
                for step, value in points
            ]
        )
        painter.setPen(QPen(colour, 1.6))
        if len(points) == 1:
            painter.drawEllipse(poly[0], 2.5, 2.5)
        else:
            painter.drawPolyline(poly)
