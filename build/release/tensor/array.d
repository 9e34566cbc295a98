build/release/tensor/array.o: tensor/array.cpp tensor/array.h \
 tensor/dtype.h tensor/error.h tensor/random.h tensor/shape.h \
 tensor/iter.h
tensor/array.h:
tensor/dtype.h:
tensor/error.h:
tensor/random.h:
tensor/shape.h:
tensor/iter.h:
