build/release/tensor/shape.o: tensor/shape.cpp tensor/shape.h \
 tensor/error.h
tensor/shape.h:
tensor/error.h:
